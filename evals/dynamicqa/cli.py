"""Command line: `python -m evals.dynamicqa run ...` (sample, then score) and `... score ...` (no model).

    python -m evals.dynamicqa run --checkpoint DIR | --hf_dir DIR | --endpoint URL --out DIR \
        [--limit N] [--types static,temporal,disputable] [--judge nli|embedding|exact|rouge]
    python -m evals.dynamicqa score --samples DIR/samples.jsonl --out DIR [--judge ...]

`run` needs `evals.backends` (the model plumbing, imported only on this path); `score` needs no model.
Both write record.json (the EvalRecord) into --out and print one JSON summary line (means per fact type) as
the last stdout line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from evals.dynamicqa.data import FACT_TYPES, default_data_dir, load_all
from evals.dynamicqa.judges import JUDGES, make_judge
from evals.dynamicqa.record import make_record
from evals.dynamicqa.sample import P_S_STEPS, SamplingPlan, sample_items
from evals.dynamicqa.score import ScoreOptions, score_samples
from evals.provenance import check_run_record, provenance, records_hash
from patch_training.contract.layout import cache_dir, record_file
from patch_training.errors import UserError, run_cli

log = logging.getLogger("evals.dynamicqa")


def _add_judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", choices=JUDGES, default="nli",
                   help="answer-equivalence judge (nli needs --nli_dir)")
    p.add_argument("--nli_dir", help="local DeBERTa-MNLI-layout model directory (transformers)")
    p.add_argument("--nli_with_question", action="store_true",
                   help="prepend the question to each answer (default: the official answers-only input)")
    p.add_argument("--embedding_threshold", type=float, default=0.8, help="cosine threshold")
    p.add_argument("--rouge_threshold", type=float, default=0.3, help="ROUGE-L F1 threshold")
    p.add_argument("--official_clustering", action="store_true",
                   help="reproduce the official clustering quirk (overlapping clusters)")
    p.add_argument("--judge_device", default="cpu")
    p.add_argument("--judge_cache_dir", help="where the embedding model is extracted")


def _add_fallback_model_args(p: argparse.ArgumentParser) -> None:
    """The model flags `evals.backends.add_model_args` defines, so that parsing works without it."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint")
    g.add_argument("--hf_dir")
    g.add_argument("--endpoint")
    p.add_argument("--model_name")
    p.add_argument("--label")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--chat", action="store_true")
    p.add_argument("--decode_dtype", choices=("float32", "bfloat16"))
    p.add_argument("--cache_dir")


def build_parser(with_backends: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evals.dynamicqa", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sample a model on DynamicQA, then score")
    if with_backends:
        from evals.backends import add_model_args
        add_model_args(run)
    else:
        _add_fallback_model_args(run)
    run.add_argument("--out", required=True, help="output directory (samples, distributions, scores)")
    run.add_argument("--data_dir", help="folder with the three CSVs (default ../shared/data/dynamicqa)")
    run.add_argument("--types", default=",".join(FACT_TYPES))
    run.add_argument("--limit", type=int, help="first N valid rows per fact type")
    run.add_argument("--num_samples", type=int, default=10)
    run.add_argument("--temperature", type=float, default=0.5)
    run.add_argument("--top_p", type=float, default=1.0)
    run.add_argument("--max_new_tokens", type=int, default=20)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--stop", action="append", default=None,
                     help="stop string besides the model's EOS (repeatable; default none, as the official code)")
    run.add_argument("--p_s_steps", choices=P_S_STEPS, default="all",
                     help="steps p_s averages: all = every generated step, the EOS/stop step included (official); "
                          "kept = the answer's own tokens only (this project's earlier variant, with --stop '\\n' "
                          "for base models)")
    run.add_argument("--dist_dtype", choices=("float32", "float16"), default="float32",
                     help="storage dtype of the distributions (float16 halves the disk)")
    run.add_argument("--chunk_items", type=int, default=16, help="items per generate call (3 prompts each)")
    # The 10 samples of a prompt share one prefill in the engine, so a wide batch holds whole prompts:
    # 16 items = 48 prompts = 480 rows = 15 batches of 32 per generate call (as benchmarks.dynamicqa_sampling).
    run.set_defaults(batch_size=32)
    _add_judge_args(run)
    score = sub.add_parser("score", help="score a saved samples file (no model)")
    score.add_argument("--samples", required=True)
    score.add_argument("--out", required=True)
    _add_judge_args(score)
    return parser


def _judge(args):
    return make_judge(args.judge, nli_dir=args.nli_dir, nli_with_question=args.nli_with_question,
                      embedding_threshold=args.embedding_threshold, rouge_threshold=args.rouge_threshold,
                      cache_dir=args.judge_cache_dir, device=args.judge_device)


def _summary_line(summary: dict[str, Any]) -> str:
    means = {t: {k: v[k] for k in ("items", "semantic_entropy", "coherent_persuasion", "persuaded",
                                   "stubborn", "cp_approximate")}
             for t, v in summary["by_type"].items()}
    return json.dumps({"judge": summary["judge"], "official_clustering": summary["official_clustering"],
                       "by_type": means, "problems": summary["problems"]})


def parse_types(text: str) -> list[str]:
    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in FACT_TYPES]
    if bad or not types:
        raise UserError(f"--types: unknown fact type(s) {bad or text!r}; choose from {', '.join(FACT_TYPES)}")
    return types


def prepare_run(args) -> tuple[Any, dict]:
    """(judge, loaded items): everything `run` can check before the (slow) model load."""
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    if args.num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {args.num_samples}")
    return _judge(args), load_all(args.data_dir, parse_types(args.types), args.limit)


RUN_RECORD = "run.json"


def run_with_model(model, args, prepared: tuple[Any, dict] | None = None) -> dict[str, Any]:
    """The `run` command after the model is open (tests call this with a test double)."""
    judge, loads = prepared or prepare_run(args)
    items = []
    for t, res in loads.items():
        log.info("%s: %s", t, res.report())
        items.extend(res.items)
    stop = tuple(s for s in (args.stop or []) if s)
    plan = SamplingPlan(num_samples=args.num_samples, temperature=args.temperature, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, seed=args.seed, stop=stop,
                        p_s_steps=getattr(args, "p_s_steps", "all"),
                        chat=bool(getattr(args, "chat", False)), dist_dtype=args.dist_dtype)
    out = Path(args.out)
    prov = provenance(model_fingerprint=model.fingerprint, data=str(args.data_dir or default_data_dir()),
                      data_hash=records_hash(dataclasses.asdict(it) for it in items), settings=plan.settings())
    # samples already in `out` must come from the same model, data and settings
    check_run_record(out / RUN_RECORD, prov, keys=("model_fingerprint", "data_hash", "settings"))
    samples = sample_items(model, items, out, plan, chunk_items=args.chunk_items, log=log.info)
    summary = score_samples(samples, out, judge, ScoreOptions(official_clustering=args.official_clustering),
                            log=log.info)
    summary["provenance"] = prov
    summary["load"] = {t: {"items": len(r.items), "rows": r.rows_read, "rows_in_file": r.rows_in_file,
                           "problems": dict(r.problems)} for t, r in loads.items()}
    name = getattr(args, "label", None) or getattr(args, "checkpoint", None) or getattr(args, "hf_dir", None) \
        or getattr(args, "endpoint", None)
    make_record(summary, model_name=name, model_fingerprint=model.fingerprint, data_path=prov["data"],
                data_hash=prov["data_hash"], config=prov["settings"], load=summary["load"]).write(record_file(out))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with_backends = bool(argv) and argv[0] == "run"
    args = build_parser(with_backends).parse_args(argv)
    if args.command == "score":
        summary = score_samples(args.samples, args.out, _judge(args),
                                ScoreOptions(official_clustering=args.official_clustering), log=log.info)
        recorded = Path(args.samples).parent / RUN_RECORD   # samples made by `run` carry their provenance
        prov = json.loads(recorded.read_text()) if recorded.is_file() else {}
        make_record(summary, model_name=None, model_fingerprint=prov.get("model_fingerprint"),
                    data_path=prov.get("data"), data_hash=prov.get("data_hash"),
                    config=dict(prov.get("settings") or {}, samples=str(args.samples))).write(record_file(args.out))
    else:
        prepared = prepare_run(args)
        from evals.backends import open_model_from_args
        model = open_model_from_args(args, default_cache_dir=str(cache_dir(args.out)))
        summary = run_with_model(model, args, prepared)
    print(_summary_line(summary), flush=True)
    return 0


def cli() -> None:
    run_cli(main)
