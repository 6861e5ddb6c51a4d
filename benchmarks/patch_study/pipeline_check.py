"""Does the input pipeline keep up at the study's shapes? `python -m benchmarks.patch_study.pipeline_check
[--out runs/patch_study] [--steps 200]`

For each K of the study (1 = token rows, 2/4/8 = patch rows of K·128 tokens), opens the study's own
row cache (the one `<out>/study.json`'s budget built; building it first if missing), then times what
the trainer does per step: `host_batch(step)` plus the device transfer (`benchmarks.input_pipeline`).
Trainer side: K x the study's measured tokens/s (the network sees 1/K of the positions per token read
at patch level). Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/patch_study")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)

    import gin
    from benchmarks.input_pipeline import pipeline_tokens_per_s
    from benchmarks.patch_study import runner
    from benchmarks.patch_study.plan import BASE_GIN, BATCH_SIZE, ROWS, SEQUENCE_LENGTH, plan_runs
    from patch_training.data.factory import make_dataset
    from patch_training.errors import UserError
    from patch_training.main.two_stage import parse_experiment_gin

    study_path = Path(args.out) / runner.STUDY_FILE
    if not study_path.is_file():
        raise UserError(f"{study_path} not found: run `python -m benchmarks.patch_study --out {args.out}` first")
    study = json.loads(study_path.read_text())
    gin.clear_config()
    parse_experiment_gin([BASE_GIN], ["MODEL_DIR = '/nonexistent'"])
    from patch_training.data.code_mix import register_code_mix_corpus
    from patch_training.data.vocab import get_vocabulary
    with gin.config_scope("code_mix"):  # base.gin binds the corpus under this scope
        task = register_code_mix_corpus()
    vocab = get_vocabulary()
    gin.clear_config()
    rates = runner.observed_rates(Path(args.out), plan_runs(study.get("seeds", 3))) or {}
    step_s = rates.get("seconds_per_step") or runner.measure_step_seconds()
    trainer_tps = BATCH_SIZE * SEQUENCE_LENGTH / step_s
    results = []
    for k in sorted({1} | {r.patch_size for r in ROWS if r.patch_fraction}):
        ds = make_dataset(task=task, split="train", sequence_length=SEQUENCE_LENGTH * k, vocab=vocab,
                          patch_size=k, concat=True,
                          max_tokens=int(study["token_budget"] * runner.DATA_MARGIN))
        pipe = pipeline_tokens_per_s(ds, BATCH_SIZE, args.steps)
        need = trainer_tps * k
        results.append({"patch_size": k, "row_tokens": SEQUENCE_LENGTH * k, **pipe, "trainer_tokens_per_s": need,
                        "headroom": pipe["pipeline_tokens_per_s"] / need})
        print(f"K={k}: pipeline {pipe['pipeline_tokens_per_s']:,.0f} tok/s vs trainer {need:,.0f} tok/s "
              f"(headroom {results[-1]['headroom']:.1f}x)", file=sys.stderr, flush=True)
    out = {"benchmark": "patch_study_pipeline", "seconds_per_token_step": step_s, "shapes": results,
           "pipeline_keeps_up": all(r["headroom"] > 1.0 for r in results)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    from patch_training.errors import run_cli
    run_cli(main, prog="python -m benchmarks.patch_study.pipeline_check")
