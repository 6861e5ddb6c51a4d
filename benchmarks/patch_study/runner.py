"""Running the study's runs: resume state, one run in-process, the step-time measurement, the ETA.

Each run is `patch_training.two_stage_training.run_experiment` on the row's gin file with the run's
seed and MODEL_DIR, so resume is the trainer's own: a finished run (every stage `completed` in its
`cost.json`) is skipped, an interrupted one resumes from its newest complete checkpoint.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from benchmarks.patch_study.plan import BASE_GIN, BATCH_SIZE, MAIN, SEQUENCE_LENGTH, StudyRun
from patch_training.errors import UserError
from patch_training.metrics import read_jsonl
from patch_training.patch_cost import COST_FILE

STUDY_FILE = "study.json"
# Tokens of corpus each run may read beyond its budget (row rounding, the last partial block).
DATA_MARGIN = 1.12


def say(text: str) -> None:
    print(f"[patch_study] {text}", file=sys.stderr, flush=True)


def run_state(run_dir: Path) -> str:
    """'finished', 'partial' (something on disk: resumes) or 'absent'."""
    cost_path = run_dir / COST_FILE
    if cost_path.is_file():
        cost = json.loads(cost_path.read_text())
        if cost["stages"] and all(s.get("status") == "completed" for s in cost["stages"]):
            return "finished"
        return "partial"
    return "partial" if run_dir.exists() and any(run_dir.iterdir()) else "absent"


def load_or_write_study_record(out: Path, record: dict) -> dict:
    """The study's fixed choices (token budget, seeds) live in `study.json`; a rerun keeps them."""
    path = out / STUDY_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        return saved
    from patch_training.atomic import write_json_atomic
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def bindings_for(run: StudyRun, run_dir: Path, token_budget: int, corpus_tokens: int) -> list[str]:
    """The run's own bindings. Every run of a study reads the same corpus (`corpus_tokens`, the main
    size's full budget plus a margin): one set of row caches, one held-out split, and runs with a smaller
    budget read fewer of its rows, none twice."""
    return [f"MODEL_DIR = '{run_dir}'", f"SEED = {run.seed}", f"TOKEN_BUDGET = {token_budget}",
            f"DATA_MAX_TOKENS = {int(corpus_tokens * DATA_MARGIN)}"]


def run_one(run: StudyRun, run_dir: Path, token_budget: int, extra_bindings: Sequence[str] = (), *,
            corpus_tokens: int | None = None) -> dict:
    """Train (or resume) one run in this process; returns {"status", "elapsed_s"}."""
    import gin
    from patch_training import two_stage_training
    from patch_training.gin_utils import call_configured
    from patch_training.main.two_stage import parse_experiment_gin

    gin.clear_config()
    parse_experiment_gin([run.row.gin_file], bindings_for(run, run_dir, token_budget, corpus_tokens or token_budget)
                         + list(extra_bindings))
    t0 = time.perf_counter()
    try:
        result = call_configured(two_stage_training.run_experiment)
    finally:
        gin.clear_config()
    unfinished = [(i, s) for i, s in sorted(result.stages.items()) if s.get("status") != "completed"]
    status = "finished" if not unfinished else unfinished[0][1].get("status", "unfinished")
    return {"status": status, "elapsed_s": time.perf_counter() - t0}


def measure_step_seconds(steps: int = 8) -> float:
    """Median seconds of the study model's compiled train step at 32 x 128 tokens (random tokens)."""
    import gin
    import jax
    from benchmarks.train_throughput import random_batch
    from patch_training.main.two_stage import parse_experiment_gin
    from patch_training.model import ModelConfig
    from patch_training.optimizer import OptimizerConfig
    from patch_training.partitioning import global_batch, make_mesh, mesh_context
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    gin.clear_config()
    parse_experiment_gin([BASE_GIN], ["MODEL_DIR = '/nonexistent'"])
    cfg = ModelConfig()
    gin.clear_config()
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    compiled = compile_train_step(cfg, OptimizerConfig(warmup_steps=0), 1000, StepConfig(patch_size=1), mesh)
    state = create_train_state(cfg, compiled.tx, mesh, 0, compiled.shardings)
    batch = global_batch(random_batch(cfg.vocab_size, BATCH_SIZE, SEQUENCE_LENGTH), mesh)
    times = []
    with mesh_context(mesh):
        for i in range(steps + 2):
            t0 = time.perf_counter()
            state, metrics = compiled.train_step(state, batch)
            jax.block_until_ready(metrics["loss"])
            if i >= 2:  # the first calls include compilation and warm-up
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def observed_rates(out: Path, runs: Sequence[StudyRun]) -> dict | None:
    """Seconds per (main-size) token step and per-run overhead seen in this study's finished main-size
    runs, if any."""
    step_times, overheads = [], []
    for run in runs:
        run_dir = out / run.name
        if run.row.size is not MAIN or run_state(run_dir) != "finished":
            continue
        cost = json.loads((run_dir / COST_FILE).read_text())
        steady = 0.0
        for stage in cost["stages"]:
            rows = read_jsonl(run_dir / stage["name"] / "metrics.jsonl")
            t = [r["step_time_s"] for r in rows if "step_time_s" in r]
            if not t:
                break
            # A patch step of B2/K rows puts 1/K of a token step's positions through the network:
            # scale it to a token step so that both stages estimate the same rate.
            positions = stage["batch_size"] * stage["network_length"] / (BATCH_SIZE * SEQUENCE_LENGTH)
            step_times.append(statistics.median(t) / positions)
            steady += statistics.median(t) * stage["num_steps"]
        overheads.append(max(0.0, cost["total_wall_s"] - steady))
    if not step_times:
        return None
    return {"seconds_per_step": statistics.median(step_times), "overhead_s_per_run": statistics.median(overheads)}


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def expected_seconds(runs: Sequence[StudyRun], token_steps: int, seconds_per_step: float,
                     overhead_s_per_run: float) -> float:
    """Training time = Σ cost × main token steps × step time (the patch stage takes λ of the steps, each
    1/K of a token step's positions in the network; a smaller budget or size scales it down, see
    `Row.main_cost`), plus a fixed overhead per run."""
    return sum(r.row.main_cost * token_steps * seconds_per_step + overhead_s_per_run for r in runs)


def check_plan_matches(run_dir: Path, token_budget: int) -> None:
    """Refuse early, with the fix, when a run dir was planned for another budget, or under the recipe
    before issue 25 (a patch step of B2 rows, K x a token step's tokens): such a run would resume, or
    count as finished, with its own plan and mix two recipes in one table."""
    from patch_training.legacy_names import upgrade_plan_record
    plan = run_dir / "two_stage.json"
    if not plan.is_file():
        return
    record = upgrade_plan_record(json.loads(plan.read_text()))
    saved = record.get("token_budget")
    if saved != token_budget:
        raise UserError(f"{run_dir} was trained with a token budget of {saved:,}, this study plans "
                        f"{token_budget:,}; use another --out (or delete that run dir)")
    for stage in record.get("stages") or []:
        per_step = stage["batch_size"] * stage["sequence_length"]
        if per_step != BATCH_SIZE * SEQUENCE_LENGTH:
            raise UserError(f"{run_dir}: its {stage['name']} takes {per_step:,} tokens per step, this study "
                            f"{BATCH_SIZE * SEQUENCE_LENGTH:,} in every stage (a run dir from before equal tokens "
                            "per step, issue 25); use another --out")
