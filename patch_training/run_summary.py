"""Read a finished (or partial) two-stage run back: cost, final validation, loss-vs-compute curves.

Used by the patch-level benchmarks and by the main job's report. A two-stage run root holds
`cost.json` (the plan, analytic FLOPs per step and per stage, wall times) and one trainer run dir per
stage with `metrics.jsonl` and `eval.json`; a token-only baseline is the same layout with one stage.
Curves put every point at the cumulative training FLOPs spent when it was logged, across stages.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from patch_training.metrics import read_jsonl
from patch_training.patch_cost import COST_FILE


def load_cost(run_root: Path) -> dict[str, Any] | None:
    path = Path(run_root) / COST_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _stage_rows(run_root: Path, stage: dict) -> list[dict]:
    path = Path(run_root) / stage["name"] / "metrics.jsonl"
    return read_jsonl(path) if path.exists() else []


def eval_curve(run_root: Path, cost: dict) -> dict[str, list[tuple[float, float]]]:
    """Validation loss per eval set against cumulative training FLOPs."""
    curves: dict[str, list[tuple[float, float]]] = {}
    offset = 0.0
    for stage in cost["stages"]:
        for r in _stage_rows(run_root, stage):
            for key, value in r.items():
                if key.startswith("eval/") and key.endswith("/loss"):
                    name = key[len("eval/"):-len("/loss")]
                    curves.setdefault(name, []).append((offset + r["step"] * stage["flops_per_step"], value))
        offset += stage["flops"]
    return curves


def train_curve(run_root: Path, cost: dict) -> list[tuple[float, float, str]]:
    """(cumulative FLOPs, logged train loss, stage name) for every logged training step.

    The patch stage's loss is the patch loss (each of K tokens predicted from the previous patch), so
    it is not on the token-level scale; the stage name lets a plot tell them apart.
    """
    points = []
    offset = 0.0
    for stage in cost["stages"]:
        for r in _stage_rows(run_root, stage):
            if "loss" in r and not any(k.startswith("eval/") for k in r):
                points.append((offset + r["step"] * stage["flops_per_step"], r["loss"], stage["name"]))
        offset += stage["flops"]
    return points


def steady_train_seconds(run_root: Path, cost: dict) -> float | None:
    """Σ over stages of (median logged step time × steps): training time without compilation or evals."""
    total = 0.0
    for stage in cost["stages"]:
        times = [r["step_time_s"] for r in _stage_rows(run_root, stage) if "step_time_s" in r]
        if not times:
            return None
        total += statistics.median(times) * stage["num_steps"]
    return total


def stage_evals(run_root: Path, cost: dict) -> dict[str, dict]:
    """{stage name: {eval set: {"loss", "perplexity", ...}}} for the stages that finished."""
    out = {}
    for stage in cost["stages"]:
        path = Path(run_root) / stage["name"] / "eval.json"
        if path.exists():
            out[stage["name"]] = json.loads(path.read_text())["eval"]
    return out


def summarise(label: str, run_root: Path) -> dict:
    """One row for a comparison table (raises FileNotFoundError when the run has no cost.json)."""
    run_root = Path(run_root)
    cost = load_cost(run_root)
    if cost is None:
        raise FileNotFoundError(f"{run_root / COST_FILE} not found")
    per_stage = stage_evals(run_root, cost)
    last = cost["stages"][-1]["name"]
    final = per_stage.get(last, {})
    return {
        "run": label, "run_dir": str(run_root), "patch_size": cost["patch_size"],
        "patch_fraction": cost["patch_fraction"], "relative_cost": cost["relative_cost"],
        "relative_flops_analytic": cost["relative_flops_analytic"], "total_flops": cost["total_flops"],
        "tokens": cost["total_tokens"], "wall_s": cost["total_wall_s"],
        "train_wall_s": sum(s["train_wall_s"] or 0.0 for s in cost["stages"]),
        "steps": {s["name"]: s["num_steps"] for s in cost["stages"]},
        "finished": all(s.get("status") == "completed" for s in cost["stages"]),
        "steady_train_s": steady_train_seconds(run_root, cost),
        "final": {name: {"loss": m["loss"], "perplexity": m["perplexity"]} for name, m in final.items()},
        "per_stage_eval": per_stage, "curve": eval_curve(run_root, cost),
    }
