"""CLI: `python -m evals.execution probe` and `python -m evals.execution check --program F --cases C.jsonl`."""
from __future__ import annotations

import argparse
import json
import sys

from patch_training.errors import UserError, run_cli


def _check(args) -> int:
    from evals.execution.canonical import BadExpected, outputs_match
    from evals.execution.protocol import Limits
    from evals.execution.pool import Program, SandboxPool

    # Start the sandbox before reading any expected outputs (they must never be inherited by it).
    with SandboxPool(1, limits=Limits(wall_s=args.wall)) as pool:
        try:
            source = open(args.program, encoding="utf-8").read()
        except OSError as e:
            raise UserError(f"cannot read program {args.program}: {e.strerror}") from None
        calls, expected = [], []
        try:
            lines = open(args.cases, encoding="utf-8").read().splitlines()
        except OSError as e:
            raise UserError(f"cannot read cases {args.cases}: {e.strerror}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
                if not isinstance(case, dict) or not ({"kwargs", "kwargs_src"} & case.keys()):
                    raise ValueError
            except ValueError:
                raise UserError(f"{args.cases}:{n}: not a JSON object with 'kwargs' or 'kwargs_src'") from None
            calls.append({"kwargs_src": case["kwargs_src"]} if "kwargs_src" in case else {"kwargs": case["kwargs"]})
            expected.append(case.get("expected"))
        res = pool.run_one(Program("cli", source, args.entry, calls))
    for call, exp in zip(res.calls, expected):
        row = {"status": call["status"], "output": call["output"]}
        if call.get("note"):
            row["note"] = call["note"]
        if exp is not None:
            try:
                row["match"] = outputs_match(call, exp)
            except BadExpected as e:
                row["match"] = False
                row["bad_expected"] = str(e)
        print(json.dumps(row))
    return 0


def _probe(args) -> int:
    from evals.execution.probe import resolve_tier

    print(json.dumps(resolve_tier(args.tier)))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.execution")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="run a program on JSONL cases in the sandbox")
    c.add_argument("--program", required=True)
    c.add_argument("--cases", required=True)
    c.add_argument("--entry", default="f", help="function to call (default: f)")
    c.add_argument("--wall", type=float, default=2.0, help="per-call wall limit in seconds")
    pr = sub.add_parser("probe", help="print the isolation tier as JSON")
    pr.add_argument("--tier", choices=("T1", "T2", "T3"), default=None,
                    help="prove this tier instead of picking the strongest (T3 needs EXECUTOR_ALLOW_WEAK=1)")
    args = ap.parse_args(argv)
    return _check(args) if args.cmd == "check" else _probe(args)


if __name__ == "__main__":
    run_cli(main, prog="python -m evals.execution")
