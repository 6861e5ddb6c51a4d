"""A Case2Code run as an EvalRecord: the scoring summary's scalars flat in `summary`, its breakdowns as tables.

Tables: `statuses` (status, answers), `by_shown_examples` (shown, rows, pass_at_1, gold), `gold_misses`
(id, func, status, bad_inputs, n_inputs, classes), `gold_miss_classes` (class, rows, reason), `extraction`
(how, answers), `skipped_data_rows` (reason, rows).
"""
from __future__ import annotations

from typing import Any

from patch_training.contract.records import EvalRecord

EVAL = "case2code"


def summary_scalars(summary: dict[str, Any]) -> dict[str, Any]:
    """The scoring summary (`scoring.score`) flattened to scalars, in reading order."""
    gold = summary.get("gold") or {}
    inputs = summary.get("inputs_per_row") or {}
    flat: dict[str, Any] = {
        "pass_at_1": summary["pass_at_1"], "gold_ceiling": summary.get("gold_ceiling"),
        "pass_at_1_on_gold_solvable": summary.get("pass_at_1_on_gold_solvable"),
        "n_rows": summary["n_rows"], "n_predictions": summary["n_predictions"],
        "rows_without_predictions": summary.get("rows_without_predictions"),
        "passed": summary["counts_by_status"].get("passed", 0),
        "samples_per_row_min": summary["samples_per_row"]["min"],
        "samples_per_row_max": summary["samples_per_row"]["max"],
        "gold_passed": gold.get("passed"), "gold_rows": gold.get("rows"),
    }
    for side in ("shown", "hidden"):
        for stat in ("mean", "min", "max"):
            flat[f"{side}_inputs_{stat}"] = (inputs.get(side) or {}).get(stat)
    flat.update({k: v for k, v in inputs.items() if k.startswith("rows_hiding")})
    for k, v in summary.get("pass_at_k_unbiased", {}).items():
        flat[f"pass_at_{k}_unbiased"] = v
    for k, v in summary.get("first_k_pass_official", {}).items():
        flat[f"first_{k}_pass_official"] = v
    return flat


def summary_tables(summary: dict[str, Any], skipped_data_rows: dict[str, int]) -> dict[str, list[dict]]:
    gold = summary.get("gold") or {}
    return {
        "statuses": [{"status": k, "answers": v} for k, v in summary["counts_by_status"].items()],
        "by_shown_examples": [{"shown": int(k), "rows": v["rows"], "pass_at_1": v["pass_at_1"], "gold": v.get("gold")}
                              for k, v in summary["pass_at_1_by_shown_examples"].items()],
        "gold_misses": [{"id": m["id"], "func": m["func"], "status": m.get("status"), "bad_inputs": m["bad_inputs"],
                         "n_inputs": m["n_inputs"], "classes": ", ".join(m["classes"])} for m in gold.get("misses", [])],
        "gold_miss_classes": [{"class": c, "rows": n, "reason": gold.get("reasons", {}).get(c, "")}
                              for c, n in gold.get("misses_by_class", {}).items()],
        "extraction": [{"how": k, "answers": v} for k, v in summary.get("extraction", {}).items()],
        "skipped_data_rows": [{"reason": k, "rows": v} for k, v in skipped_data_rows.items()],
    }


def make_record(*, model_name: str | None, model_fingerprint: str, data: str, data_hash: str, config: dict,
                summary: dict[str, Any], skipped_data_rows: dict[str, int], extra: dict[str, Any]) -> EvalRecord:
    """`extra`: run facts that are not scores (rows in the file, cache hits, wall seconds), added to summary."""
    return EvalRecord.create(eval=EVAL, model_name=model_name, model_fingerprint=model_fingerprint, data_path=data,
                             data_hash=data_hash, config=config, summary={**summary_scalars(summary), **extra},
                             tables=summary_tables(summary, skipped_data_rows), items_path="samples.jsonl")
