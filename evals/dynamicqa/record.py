"""A DynamicQA run as an EvalRecord: the means per fact type as the `by_type` table, the data slice as `load`.

Tables: `by_type` (fact_type, items, semantic_entropy, coherent_persuasion, cp_items, cp_approximate, persuaded,
stubborn, mean_q_only_groups), `load` (fact_type, items, rows, rows_in_file: the slice of each CSV that ran),
`load_problems` (fact_type, reason, rows), `problems` (reason, count: lines and items scoring skipped or cut).
"""
from __future__ import annotations

from typing import Any

from patch_training.contract.records import EvalRecord

EVAL = "dynamicqa"


def make_record(summary: dict[str, Any], *, model_name: str | None, model_fingerprint: str | None,
                data_path: str | None, data_hash: str | None, config: dict[str, Any],
                load: dict[str, dict] | None = None) -> EvalRecord:
    """`summary`: score.score_samples's; `load`: per fact type {items, rows, rows_in_file, problems}."""
    by_type = [{"fact_type": t, **m} for t, m in summary["by_type"].items()]
    tables = {
        "by_type": by_type,
        "load": [{"fact_type": t, "items": v.get("items"), "rows": v.get("rows"), "rows_in_file": v.get("rows_in_file")}
                 for t, v in (load or {}).items()],
        "load_problems": [{"fact_type": t, "reason": r, "rows": n}
                          for t, v in (load or {}).items() for r, n in v.get("problems", {}).items()],
        "problems": [{"reason": r, "count": n} for r, n in summary.get("problems", {}).items()],
    }
    totals = {"ids": summary["ids"], "items": sum(r["items"] for r in by_type),
              "problems": sum(summary.get("problems", {}).values())}
    config = {**config, "judge": summary["judge"], "official_clustering": summary["official_clustering"]}
    return EvalRecord.create(eval=EVAL, model_name=model_name, model_fingerprint=model_fingerprint,
                             data_path=data_path, data_hash=data_hash, config=config, summary=totals,
                             tables=tables, items_path="scores.jsonl")
