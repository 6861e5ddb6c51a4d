"""Case2Code rows: the official test set and any split our synthesis writes in the same format.

A usable row has `id`, `prompt`, `code`, `func_name`, `example_str` and `example_outputs` (a list, or the
repr of one, of `{"return": S}` / `{"error": S}`); `choosed_example_idx` (shown inputs) is optional.
Rows that lack a field or whose outputs do not parse are counted with the reason, never fatal.
"""
from __future__ import annotations

import ast
import collections
import json
from pathlib import Path
from typing import Any

from patch_training.errors import UserError

REQUIRED = ("id", "prompt", "code", "func_name", "example_str", "example_outputs")


def _as_list(value: Any) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
        return parsed if isinstance(parsed, list) else None
    return None


def normalize_row(raw: Any) -> tuple[dict | None, str | None]:
    """(row, None) or (None, reason)."""
    if not isinstance(raw, dict):
        return None, "not a JSON object"
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        return None, f"missing {', '.join(missing)}"
    for k in ("prompt", "code", "func_name", "example_str"):
        if not isinstance(raw[k], str):
            return None, f"'{k}' is not a string"
    outputs = _as_list(raw["example_outputs"])
    if not outputs or not all(isinstance(o, dict) and ("return" in o or "error" in o) for o in outputs):
        return None, "example_outputs is not a non-empty list of {return|error} outcomes"
    shown = _as_list(raw.get("choosed_example_idx", []))
    row = dict(raw)
    row["id"] = str(raw["id"])
    row["example_outputs"] = outputs
    row["choosed_example_idx"] = shown if shown is not None else []
    return row, None


def load_rows(path: str | Path, limit: int | None = None) -> tuple[list[dict], collections.Counter]:
    """Rows in file order (first `limit` usable ones), and a Counter of skipped-row reasons."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Case2Code data not found: {p}")
    rows, problems, seen = [], collections.Counter(), set()
    with p.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError:
                problems["not JSON"] += 1
                continue
            row, why = normalize_row(raw)
            if row is None:
                problems[why] += 1
                continue
            if row["id"] in seen:
                problems["duplicate id"] += 1
                continue
            seen.add(row["id"])
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise UserError(f"{p}: no usable Case2Code rows ({dict(problems) or 'empty file'})")
    return rows, problems


def count_rows(path: str | Path) -> int:
    """Non-empty lines of a data file: what a slice of it (`--limit`) is a slice of, for reports."""
    with Path(path).open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
