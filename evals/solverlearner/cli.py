"""`python -m evals.solverlearner run|prompts|score|combine` (argparse and logging only; the work is in `pipeline`).

run:     generate completions for --tasks × --settings (through the shared generation cache, so a killed run
         resumes), then score. The model is --checkpoint / --hf_dir / --endpoint (from `evals.backends`), or
         --harness oracle|rule_blind to check the harness itself.
prompts: write `{"id", "setting", "prompt", "answer_lead"}` lines (--out is the JSONL file) for a model run
         elsewhere; its completions continue the prompt (the lead is already in it).
score:   judge anyone's completions (`{"id", "setting", "completion"}` lines).
combine: several runs' record.json side by side in one markdown table (a human view; the report reads the records).
run/score write record.json (the EvalRecord), judged.jsonl (per item), results.md and chart.png into --out.
The last stdout line of run/score is one JSON object: accuracy, parse_failures and n per cell (and more).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from evals import backends
from evals.model_api import Sampling
from evals.solverlearner import report
from evals.solverlearner.common import SETTINGS
from evals.solverlearner.harness_backends import HARNESS_BACKENDS, harness_model
from evals.solverlearner.prompts import build_prompt
from evals.solverlearner.tasks import TASK_NAMES, ProblemBank, check_settings, make_tasks, parse_task_specs
from patch_training.contract.layout import cache_dir, record_file
from patch_training.contract.records import EvalRecord
from patch_training.errors import UserError, run_cli
from patch_training.shared_data import shared_data_dir

log = logging.getLogger("evals.solverlearner")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--data_dir", default=None, help="shared data root (default: ../shared/data or "
                                                    "$PATCHTRAIN_SHARED_DATA)")
    p.add_argument("--n_shots", type=int, default=8, help="demonstrations per prompt (few-shot settings)")
    p.add_argument("--cipher_words", type=int, default=None,
                   help="generated cipher problems per shift (default 100; `score` takes the run's run.json)")
    p.add_argument("--cipher_seed", type=int, default=None, help="default 0 (`score`: the run's run.json)")
    p.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES),
                   help="task or task:variant,variant (default: every task, its default variants)")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    p.add_argument("--limit", type=int, default=None, help="first N problems of each variant")


def _select(args, bank):
    cells = parse_task_specs(args.tasks, bank.tasks)
    settings = check_settings(args.settings)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    from evals.solverlearner import pipeline
    return pipeline.select_items(bank, cells, settings, args.limit)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals.solverlearner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate and score")
    _add_common(run)
    backends.add_model_args(run, required=False)
    run.add_argument("--harness", choices=HARNESS_BACKENDS, default=None,
                     help="a harness-checking backend instead of a model")
    _add_selection(run)
    run.add_argument("--max_new_tokens", type=int, default=64, help="direct-answer settings")
    run.add_argument("--code_max_new_tokens", type=int, default=320, help="solverlearner setting")
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--seed", type=int, default=0)
    pr = sub.add_parser("prompts", help="write the prompts (for a model run elsewhere; score its completions)")
    _add_common(pr)
    _add_selection(pr)
    sc = sub.add_parser("score", help="score a predictions JSONL")
    _add_common(sc)
    sc.add_argument("--predictions", required=True)
    cb = sub.add_parser("combine", help="several runs' results side by side")
    cb.add_argument("--results", nargs="+", required=True, metavar="LABEL=RECORD_JSON")
    cb.add_argument("--out", required=True, help="markdown file to write")
    return ap


def _cipher_defaults(args, run_json: Path | None = None) -> None:
    """Unset cipher options come from the run that made the predictions (its run.json), else the defaults:
    the cipher words are generated, so scoring with other options would judge other problems."""
    recorded = {}
    if run_json is not None and run_json.is_file():
        try:
            recorded = json.loads(run_json.read_text())
        except ValueError:
            recorded = {}
    for name, default in (("cipher_words", 100), ("cipher_seed", 0)):
        if getattr(args, name) is None:
            setattr(args, name, int(recorded.get(name, default)))


def _bank(args) -> ProblemBank:
    data_dir = Path(args.data_dir) if args.data_dir else shared_data_dir()
    if not data_dir.is_dir():
        raise UserError(f"shared data directory {data_dir} does not exist (set --data_dir or "
                        f"$PATCHTRAIN_SHARED_DATA)")
    if args.n_shots < 0:
        raise UserError(f"--n_shots must be >= 0, got {args.n_shots}")
    return ProblemBank(make_tasks(cipher_words=args.cipher_words, cipher_seed=args.cipher_seed), data_dir,
                       args.n_shots)


def _open_model(args, items, bank):
    if args.harness:
        return harness_model(args.harness, bank.tasks, items)
    if not (args.checkpoint or args.hf_dir or args.endpoint):
        raise UserError("run needs a model: --checkpoint DIR, --hf_dir DIR, --endpoint URL or --harness NAME")
    return backends.open_model_from_args(args, default_cache_dir=str(cache_dir(args.out)))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from evals.solverlearner import pipeline  # keeps `--help` light

    if args.command == "combine":
        records = {}
        for spec in args.results:
            label, sep, path = spec.partition("=")
            if not sep:
                raise UserError(f"--results {spec!r}: expected LABEL=path/to/record.json")
            records[label] = EvalRecord.read(path)
        Path(args.out).write_text("# SolverLearner\n\n" + report.markdown(records))
        print(Path(args.out).read_text())
        return 0
    out = Path(args.out)
    _cipher_defaults(args, Path(args.predictions).parent / "run.json" if args.command == "score" else None)
    if args.command == "prompts":
        bank = _bank(args)
        items = _select(args, bank)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as f:
            for problem, setting in items:
                prompt, lead = build_prompt(bank.tasks[problem.task], problem, setting)
                f.write(json.dumps({"id": problem.id, "setting": setting, "prompt": prompt,
                                    "answer_lead": lead}) + "\n")
        print(json.dumps({"prompts": len(items), "out": str(out)}))
        return 0
    if args.command == "run":
        if not (args.harness or args.checkpoint or args.hf_dir or args.endpoint):
            raise UserError("run needs a model: --checkpoint DIR, --hf_dir DIR, --endpoint URL or --harness NAME")
        if args.harness and (args.checkpoint or args.hf_dir or args.endpoint):
            raise UserError("--harness replaces the model: drop --checkpoint/--hf_dir/--endpoint, or --harness")
        chat = bool(getattr(args, "chat", False))
        try:
            direct = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                              chat=chat)
            code = Sampling(max_new_tokens=args.code_max_new_tokens, temperature=args.temperature, seed=args.seed,
                            chat=chat)
        except ValueError as e:
            raise UserError(f"sampling options: {e}") from None
        bank = _bank(args)
        items = _select(args, bank)
        model = _open_model(args, items, bank)
        config = {"n_shots": args.n_shots, "cipher_words": args.cipher_words, "cipher_seed": args.cipher_seed}
        preds = pipeline.generate(model, bank, items, out, direct_sampling=direct, code_sampling=code,
                                  batch_size=max(1, int(getattr(args, "batch_size", 8) or 8)), config=config)
        source = args.harness or args.checkpoint or args.hf_dir or args.endpoint
        title = f"SolverLearner ({source})"
        name = getattr(args, "label", None) or source
        fingerprint = model.fingerprint
        settings = dict(config, direct_sampling=direct.key(), code_sampling=code.key())
    else:
        preds = Path(args.predictions)
        title = f"SolverLearner ({preds})"
        name = None
        bank = None
        # predictions made by `run` elsewhere carry their run.json: the model and settings come from there
        run_json = preds.parent / "run.json"
        recorded = json.loads(run_json.read_text()) if run_json.is_file() else {}
        fingerprint = recorded.pop("model", None)
        settings = recorded or {"n_shots": args.n_shots, "cipher_words": args.cipher_words,
                                "cipher_seed": args.cipher_seed, "predictions": str(preds)}
    if bank is None:
        bank = _bank(args)
    summary = pipeline.score(preds, bank, out, workers=args.workers, title=title, model_name=name,
                             model_fingerprint=fingerprint, config=settings)
    print(f"record: {record_file(out)}; views: {out / 'results.md'}, {out / 'chart.png'}", file=sys.stderr)
    print(json.dumps(summary, sort_keys=True))
    return 0


def entry() -> None:
    run_cli(main, prog="python -m evals.solverlearner")
