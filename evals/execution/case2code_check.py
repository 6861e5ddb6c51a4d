"""Replay Case2Code's gold functions through the sandbox and classify every mismatch with the recorded outputs.

    python -m evals.execution.case2code_check [--data ../shared/data/case2code/test.jsonl]

The official outputs come from an older Python, so some exception messages differ; each mismatch is put in a
class so a report can say why, not just how many.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time

from evals.execution.canonical import EXCEPTION_MARKER, outputs_match
from evals.execution.limits import Limits
from evals.execution.pool import Program, SandboxPool

_CLASS = re.compile(r"<class '([^']+)'>")


def classify(call: dict, gold: dict) -> str:
    """Name the reason one call's outcome differs from the gold outcome."""
    if call["status"] not in ("ok", "error", "memory"):
        return f"status:{call['status']}"
    g = gold.get("error")
    if g is not None:
        if not call.get("exc"):
            return "gold error, we returned"
        gcls = _CLASS.search(g)
        if gcls and gcls.group(1) != call["exc"]:
            return f"exception class differs ({gcls.group(1)} vs {call['exc']})"
        return f"exception message differs ({call['exc']})"
    if call.get("exc"):
        return f"gold returned, we raised {call['exc']}"
    return "return value differs"


def check_rows(pool: SandboxPool, rows: list[dict]) -> dict:
    programs = [Program(str(r["id"]), r["code"], r["func_name"], calls_src=r["example_str"],
                        n_calls=len(r["example_outputs"])) for r in rows]
    gold = {str(r["id"]): r["example_outputs"] for r in rows}
    exact, per_class, examples = 0, collections.Counter(), {}
    for res in pool.run(programs):
        bad = []
        for call, g in zip(res.calls, gold[res.task_id]):
            if not outputs_match(call, g):
                bad.append(classify(call, g))
                examples.setdefault(bad[-1], (res.task_id, call.get("output"), g))
        if not bad:
            exact += 1
        for c in set(bad):
            per_class[c] += 1
    # Gold errors that carry printed text before the marker: matched after stripping it (trusted side).
    prefixed = sum(1 for r in rows for o in r["example_outputs"]
                   if "error" in o and not o["error"].startswith(EXCEPTION_MARKER))
    return {"rows": len(rows), "exact_rows": exact, "mismatch_rows_by_class": dict(per_class),
            "examples": {k: list(v) for k, v in examples.items()}, "gold_errors_with_stdout_prefix": prefixed}


def main(argv=None) -> int:
    from patch_training.shared_data import shared_data_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared_data_path("case2code", "test.jsonl")))
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    with SandboxPool(limits=Limits(wall_s=2.0, program_wall_s=30.0)) as pool:  # before the gold is read
        rows = [json.loads(l) for l in open(args.data, encoding="utf-8")]
        report = check_rows(pool, rows)
    report["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
