"""python -m evals.case2code run | score (argparse and logging only; the work is in the sibling modules).

  run    generate with any backend (cached in --out/gen_cache: a killed run redoes only what is missing), judge in
         the sandbox, score; writes predictions.jsonl, samples.jsonl (per item), record.json (the EvalRecord),
         and results.md + results.png (human views of the record) into --out
  score  judge anyone's predictions: --data F --predictions P.jsonl --out V.jsonl; the last stdout line is a
         JSON summary (pass_at_1, gold_ceiling, n_rows, n_predictions, ...)
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Iterable

from patch_training.contract.layout import cache_dir
from patch_training.errors import UserError, run_cli

log = logging.getLogger("evals.case2code")


def _default_data() -> str:
    from patch_training.shared_data import shared_data_path
    return str(shared_data_path("case2code", "test.jsonl"))


def _report_problems(problems, what: str) -> None:
    for reason, n in problems.items():
        print(f"skipped {n} {what} row(s): {reason}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from evals.backends import open_model_from_args
    from evals.case2code.evaluate import run
    from evals.model_api import Sampling

    if args.num_samples < 1 or args.max_new_tokens < 1:
        raise UserError("--num_samples and --max_new_tokens must be >= 1")
    if args.num_samples > 1 and args.temperature == 0:
        log.warning("%d samples at temperature 0 are identical; use --temperature for pass@k", args.num_samples)
    try:
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            seed=args.seed, chat=args.chat)
    except ValueError as e:
        raise UserError(f"sampling flags: {e}") from None
    out = Path(args.out)
    record = run(lambda: open_model_from_args(args, default_cache_dir=str(cache_dir(out))), data=args.data, out=out,
                 sampling=sampling, num_samples=args.num_samples, limit=args.limit, workers=args.workers,
                 label=args.label, config={"model": args.checkpoint or args.hf_dir or args.endpoint,
                                           "model_name": args.model_name},
                 on_problems=lambda problems: _report_problems(problems, "data"))
    summary = record.summary
    line = {k: summary.get(k) for k in ("pass_at_1", "gold_ceiling", "n_rows", "n_predictions")}
    line.update(counts_by_status={r["status"]: r["answers"] for r in record.tables["statuses"]}, out=str(out))
    print(json.dumps(line))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from evals.case2code.data import load_rows
    from evals.case2code.evaluate import open_pool, write_jsonl
    from evals.case2code.scoring import read_predictions, score

    t0 = time.monotonic()
    with open_pool(args.workers) as pool:
        rows, problems = load_rows(args.data, args.limit)
        _report_problems(problems, "data")
        answers, pred_problems = read_predictions(args.predictions, {r["id"] for r in rows})
        for e in pred_problems["examples"]:
            print(f"skipped {args.predictions} {e}", file=sys.stderr)
        verdicts, summary = score(pool, rows, answers, with_gold=not args.no_gold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, ({k: v[k] for k in ("id", "sample", "passed", "n_inputs", "n_matched", "status", "extract")}
                       for v in verdicts))
    summary.update(malformed_lines=pred_problems["malformed_lines"], unknown_ids=pred_problems["unknown_ids"],
                   skipped_data_rows=sum(problems.values()), wall_s=round(time.monotonic() - t0, 2))
    summary.setdefault("gold_ceiling", None)
    if "gold" in summary:  # the per-row gold table stays out of the one-line summary
        summary["gold_misses_by_class"] = summary.pop("gold")["misses_by_class"]
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evals.backends import add_model_args

    ap = argparse.ArgumentParser(prog="python -m evals.case2code", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="generate, judge and score a model")
    add_model_args(run)
    run.add_argument("--data", default=None, help="Case2Code JSONL (default: the official test set)")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--limit", type=int, default=None, help="first N usable rows")
    run.add_argument("--num_samples", type=int, default=1)
    run.add_argument("--max_new_tokens", type=int, default=2048, help="official: 2048")
    run.add_argument("--temperature", type=float, default=0.0, help="official: 0 (greedy)")
    run.add_argument("--top_p", type=float, default=1.0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")
    sc = sub.add_parser("score", help="judge a predictions file")
    sc.add_argument("--data", default=None, help="Case2Code JSONL (default: the official test set)")
    sc.add_argument("--predictions", required=True, help='JSONL of {"id": ..., "completion": "..."}')
    sc.add_argument("--out", required=True, help="verdicts JSONL")
    sc.add_argument("--limit", type=int, default=None)
    sc.add_argument("--workers", type=int, default=None)
    sc.add_argument("--no_gold", action="store_true", help="skip the gold ceiling")
    return ap


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every restore step at INFO
    args.data = args.data or _default_data()
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    return cmd_run(args) if args.cmd == "run" else cmd_score(args)


def entry() -> None:
    run_cli(main)
