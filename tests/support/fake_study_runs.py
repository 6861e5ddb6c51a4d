"""Fake finished study runs for the report and resume tests: real `cost.json` from `patch_cost`,
per-stage `metrics.jsonl` with validation points and step times, and `eval.json` - no training."""
from __future__ import annotations

import json
from pathlib import Path

from patch_training import patch_cost
from patch_training.model import ModelConfig

MODEL = ModelConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                    num_kv_heads=2, max_seq_len=64)
BUDGET = 120 * 4 * 16  # 120 token steps of 4 x 16


def write_run(run_dir: Path, *, patch_size: int, patch_fraction: float, final: dict[str, float],
              curve_start: dict[str, float] | None = None, evals: int = 3, finished: bool = True) -> None:
    """A run dir whose last stage ends at `final` losses; earlier evals fall linearly from `curve_start`."""
    plans = patch_cost.plan_stages(token_budget=BUDGET, patch_fraction=patch_fraction, patch_size=patch_size,
                                   sequence_length=16, batch_size=4, patch_batch_size=4, patch_sequence_length=16 * patch_size)
    start = curve_start or {k: v + 1.0 for k, v in final.items()}
    measured = {}
    for n, plan in enumerate(plans):
        stage_dir = run_dir / plan.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        last_stage = n == len(plans) - 1
        done = finished or not last_stage
        rows = []
        for i in range(1, evals + 1):
            step = plan.num_steps * i // evals
            frac = (n + i / evals) / len(plans)
            point = {f"eval/{k}/loss": start[k] + frac * (final[k] - start[k]) for k in final}
            rows.append({"step": step, **point})
            rows.append({"step": step, "loss": 3.0, "step_time_s": 0.01})
        (stage_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if done:
            evals_at_end = {k: {"loss": rows[-2][f"eval/{k}/loss"], "perplexity": 1.0} for k in final}
            (stage_dir / "eval.json").write_text(json.dumps({"step": plan.num_steps, "eval": evals_at_end}))
        measured[plan.index] = {"status": "completed" if done else "preempted", "wall_s": 2.0, "eval_s": 0.5}
    cost = patch_cost.cost_report(MODEL, plans, token_budget=BUDGET, patch_fraction=patch_fraction,
                                  patch_size=patch_size, sequence_length=16, measured=measured)
    (run_dir / patch_cost.COST_FILE).write_text(json.dumps(cost))
