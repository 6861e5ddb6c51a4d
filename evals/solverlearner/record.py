"""A SolverLearner run as an EvalRecord: totals in `summary`, one row per cell in the `cells` table.

Tables: `cells` (task, variant, setting, n, correct, accuracy, parse_failures, object_accuracy — spatial only,
else None), `exec_status` (task, variant, setting, status, count — the sandbox outcomes of written solvers),
`variants` (task, variant, problems_available), `skipped_lines` (reason, lines).
"""
from __future__ import annotations

from typing import Any

from patch_training.contract.records import EvalRecord

EVAL = "solverlearner"


def record_tables(summary: dict[str, Any]) -> dict[str, list[dict]]:
    """`summary`: scoring.aggregate's, with `problems_available`."""
    cells, execs = [], []
    for key in summary["accuracy"]:
        task, variant, setting = key.split("/")
        n = summary["n"][key]
        cells.append({"task": task, "variant": variant, "setting": setting, "n": n,
                      "correct": round(summary["accuracy"][key] * n), "accuracy": summary["accuracy"][key],
                      "parse_failures": summary["parse_failures"].get(key, 0),
                      "object_accuracy": summary.get("object_accuracy", {}).get(key)})
        for status, count in summary.get("exec_status", {}).get(key, {}).items():
            execs.append({"task": task, "variant": variant, "setting": setting, "status": status, "count": count})
    variants = [{"task": k.split("/")[0], "variant": k.split("/")[1], "problems_available": v}
                for k, v in summary.get("problems_available", {}).items()]
    skipped = [{"reason": k, "lines": v} for k, v in summary.get("bad_lines", {}).items()]
    return {"cells": cells, "exec_status": execs, "variants": variants, "skipped_lines": skipped}


def make_record(summary: dict[str, Any], *, model_name: str | None, model_fingerprint: str | None,
                data_path: str, data_hash: str, config: dict[str, Any]) -> EvalRecord:
    tables = record_tables(summary)
    n = sum(c["n"] for c in tables["cells"])
    correct = sum(c["correct"] for c in tables["cells"])
    totals = {"cells": len(tables["cells"]), "predictions": n, "correct": correct,
              "accuracy": correct / n if n else None,
              "parse_failures": sum(c["parse_failures"] for c in tables["cells"]),
              "skipped_lines": sum(summary.get("bad_lines", {}).values())}
    return EvalRecord.create(eval=EVAL, model_name=model_name, model_fingerprint=model_fingerprint,
                             data_path=data_path, data_hash=data_hash, config=config, summary=totals,
                             tables=tables, items_path="judged.jsonl")


def cell_index(record: EvalRecord) -> dict[str, dict[str, Any]]:
    """'task/variant/setting' -> its row of the cells table."""
    return {f"{c['task']}/{c['variant']}/{c['setting']}": c for c in record.table("cells")}
