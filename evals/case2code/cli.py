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
import os
import sys
import time
from pathlib import Path
from typing import Iterable

from patch_training.contract.layout import cache_dir, record_file
from patch_training.errors import UserError, run_cli

log = logging.getLogger("evals.case2code")


def _default_data() -> str:
    from patch_training.shared_data import shared_data_path
    return str(shared_data_path("case2code", "test.jsonl"))


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _open_pool(workers: int | None):
    from evals.case2code.judge import JUDGE_LIMITS
    from evals.execution import SandboxPool, SandboxUnavailable
    try:
        return SandboxPool(workers, limits=JUDGE_LIMITS)  # before any gold data is read
    except SandboxUnavailable as e:
        raise UserError(f"the sandbox is unavailable: {e}") from None


def _report_problems(problems, what: str) -> None:
    for reason, n in problems.items():
        print(f"skipped {n} {what} row(s): {reason}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from evals.backends import open_model_from_args
    from evals.case2code.data import count_rows, load_rows
    from evals.case2code.protocol import eval_prompt, prompt_hash
    from evals.case2code.report import write_markdown, write_plot
    from evals.case2code.scoring import score
    from evals.model_api import Sampling

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.num_samples < 1 or args.max_new_tokens < 1:
        raise UserError("--num_samples and --max_new_tokens must be >= 1")
    if args.num_samples > 1 and args.temperature == 0:
        log.warning("%d samples at temperature 0 are identical; use --temperature for pass@k", args.num_samples)
    try:
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            seed=args.seed, chat=args.chat)
    except ValueError as e:
        raise UserError(f"sampling flags: {e}") from None
    with _open_pool(args.workers) as pool:
        rows, problems = load_rows(args.data, args.limit)
        _report_problems(problems, "data")
        model = open_model_from_args(args, default_cache_dir=str(cache_dir(out)))
        log.info("model %s (fingerprint %s); %d rows x %d sample(s)", type(getattr(model, "inner", model)).__name__,
                 model.fingerprint, len(rows), args.num_samples)
        prompts = [eval_prompt(r) for r in rows]
        t_gen = time.monotonic()
        kw = {"progress": True} if hasattr(model, "cache") else {}
        completions = model.generate(prompts, args.num_samples, sampling, **kw)
        gen_s = time.monotonic() - t_gen
        preds = [{"id": r["id"], "sample": j, "completion": c.text, "finish_reason": c.finish_reason,
                  "n_tokens": len(c.token_ids)} for r, cs in zip(rows, completions) for j, c in enumerate(cs)]
        _write_jsonl(out / "predictions.jsonl", preds)
        t_judge = time.monotonic()
        verdicts, summary = score(pool, rows, preds)
        judge_s = time.monotonic() - t_judge
    hashes = {r["id"]: prompt_hash(p) for r, p in zip(rows, prompts)}
    by_key = {(p["id"], p["sample"]): p for p in preds}
    _write_jsonl(out / "samples.jsonl", (
        {"id": v["id"], "sample": v["sample"], "prompt_hash": hashes[v["id"]],
         "completion": by_key[(v["id"], v["sample"])]["completion"], "finish_reason":
         by_key[(v["id"], v["sample"])]["finish_reason"], "code": v["code"], "extract": v["extract"],
         "status": v["status"], "passed": v["passed"], "n_inputs": v["n_inputs"], "n_matched": v["n_matched"],
         "verdicts": v["verdicts"], "first_mismatch": v.get("first_mismatch")} for v in verdicts))
    cache = getattr(model, "cache", None)
    from evals.case2code.record import make_record
    from evals.provenance import records_hash
    config = {"limit": args.limit, "num_samples": args.num_samples,
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
              "seed": args.seed, "chat": args.chat, "model": args.checkpoint or args.hf_dir or args.endpoint,
              "model_name": args.model_name, "judge_limits": {"program_wall_s": 10.0},
              "sampling": sampling.key(), "prompt": "row prompt + official call-signature reminder",
              "extractor": "official unwrap_code (```python block, else first bare ``` block, else whole)"}
    extra = {"data_rows_in_file": count_rows(args.data),
             "cache_hits": None if cache is None else model.hits,
             "cache_misses": None if cache is None else model.misses,
             "wall_s": round(time.monotonic() - t0, 2), "generate_s": round(gen_s, 2), "judge_s": round(judge_s, 2)}
    record = make_record(model_name=args.label or config["model"], model_fingerprint=model.fingerprint,
                         data=str(args.data), data_hash=records_hash(rows), config=config, summary=summary,
                         skipped_data_rows=dict(problems), extra=extra)
    record.write(record_file(out))
    write_markdown(record, out / "results.md")
    write_plot(record, out / "results.png")
    if cache is not None:
        model.close()
    line = {k: summary.get(k) for k in ("pass_at_1", "gold_ceiling", "n_rows", "n_predictions")}
    line.update(counts_by_status=summary["counts_by_status"], out=str(out))
    print(json.dumps(line))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from evals.case2code.data import load_rows
    from evals.case2code.scoring import read_predictions, score

    t0 = time.monotonic()
    with _open_pool(args.workers) as pool:
        rows, problems = load_rows(args.data, args.limit)
        _report_problems(problems, "data")
        answers, pred_problems = read_predictions(args.predictions, {r["id"] for r in rows})
        for e in pred_problems["examples"]:
            print(f"skipped {args.predictions} {e}", file=sys.stderr)
        verdicts, summary = score(pool, rows, answers, with_gold=not args.no_gold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out, ({k: v[k] for k in ("id", "sample", "passed", "n_inputs", "n_matched", "status", "extract")}
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
