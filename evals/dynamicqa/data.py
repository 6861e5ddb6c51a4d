"""Load the DynamicQA CSVs (static, temporal, disputable) into validated items.

Each row gives one question and two contexts: the row's context with the gold `obj` filled in, and the
same context with the substitute `replace_name`. Static and temporal contexts carry an `[ENTITY]`
placeholder; disputable contexts contain the literal answer, which is replaced, and get a line naming
the article's subject in front (both as the official scripts build them). Malformed rows are counted
by reason and skipped, never fatal.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import json
import sys
from pathlib import Path

from patch_training.errors import UserError

FACT_TYPES = ("static", "temporal", "disputable")
FILE_NAMES = {"static": "Static_final.csv", "temporal": "Temporal_final.csv",
              "disputable": "Disputable_final.csv"}
VARIANTS = ("obj", "replace")
PLACEHOLDER = "[ENTITY]"
_REQUIRED = {
    "static": ("subj", "question", "obj", "replace_name", "context"),
    "temporal": ("subj", "question", "obj", "replace_name", "context"),
    "disputable": ("subj", "question", "obj", "replace_name", "context"),
}


@dataclasses.dataclass(frozen=True)
class FactItem:
    """One validated row: a question and its two filled contexts."""
    fact_type: str
    row: int                     # 0-based position among the file's data rows
    subj: str
    question: str
    obj: str
    replace_name: str
    contexts: dict[str, str]     # variant ("obj" | "replace") -> filled context
    possible_answers: tuple[str, ...] = ()

    def item_id(self, variant: str) -> str:
        return f"{self.fact_type}/{self.row}/{variant}"

    def gold(self, variant: str) -> str:
        return self.obj if variant == "obj" else self.replace_name


@dataclasses.dataclass
class LoadResult:
    items: list[FactItem]
    rows_read: int
    problems: collections.Counter   # reason -> count
    rows_in_file: int | None = None  # every data row of the CSV, so a slice can say "N of M rows"

    def report(self) -> str:
        bad = sum(self.problems.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(self.problems.items()))
        return (f"{len(self.items)} items from {self.rows_read} rows"
                + (f"; {bad} malformed rows skipped ({detail})" if bad else ""))


def fill_context(fact_type: str, context: str, subj: str, obj: str, answer: str) -> str:
    """The context with `answer` in the answer's slot (see the module docstring)."""
    if fact_type == "disputable":
        # The official scripts replace every occurrence of the literal gold answer and prepend the
        # subject line (their line has no full stop; we add one, it reads as a sentence).
        return f"This article is about {subj}. " + context.replace(obj, answer)
    return context.replace(PLACEHOLDER, answer)


def _row_problem(fact_type: str, row: dict) -> str | None:
    for col in _REQUIRED[fact_type]:
        if not (row.get(col) or "").strip():
            return f"empty {col}"
    if fact_type == "disputable":
        if row["obj"] not in row["context"]:
            return "answer not in context"
    elif PLACEHOLDER not in row["context"]:
        return f"no {PLACEHOLDER} in context"
    return None


def _possible_answers(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def load_fact_type(fact_type: str, path: str | Path, limit: int | None = None) -> LoadResult:
    """Items of one fact type from its CSV; `limit` keeps the first N valid rows."""
    if fact_type not in FACT_TYPES:
        raise UserError(f"unknown fact type {fact_type!r}; choose from {', '.join(FACT_TYPES)}")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"DynamicQA file not found: {path}")
    csv.field_size_limit(sys.maxsize)
    items: list[FactItem] = []
    problems: collections.Counter = collections.Counter()
    rows_read = rows_in_file = 0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _REQUIRED[fact_type] if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} "
                            f"(a {fact_type} file needs {', '.join(_REQUIRED[fact_type])})")
        for position, row in enumerate(reader):
            rows_in_file += 1
            if limit is not None and len(items) >= limit:
                continue   # past the slice: only counted
            rows_read += 1
            if None in row or any(v is None for v in row.values()):
                problems["wrong number of fields"] += 1
                continue
            problem = _row_problem(fact_type, row)
            if problem:
                problems[problem] += 1
                continue
            subj, obj, rep = row["subj"].strip(), row["obj"], row["replace_name"]
            contexts = {"obj": fill_context(fact_type, row["context"], subj, obj, obj),
                        "replace": fill_context(fact_type, row["context"], subj, obj, rep)}
            items.append(FactItem(fact_type, position, subj, row["question"].strip(), obj.strip(),
                                  rep.strip(), {k: v.strip() for k, v in contexts.items()},
                                  _possible_answers(row.get("possible_answers"))))
    return LoadResult(items, rows_read, problems, rows_in_file)


def default_data_dir() -> Path:
    from patch_training.shared_data import shared_data_dir
    return Path(shared_data_dir()) / "dynamicqa"


def load_all(data_dir: str | Path | None, types: list[str], limit: int | None = None
             ) -> dict[str, LoadResult]:
    """One LoadResult per requested fact type."""
    base = Path(data_dir) if data_dir else default_data_dir()
    return {t: load_fact_type(t, base / FILE_NAMES[t], limit) for t in types}
