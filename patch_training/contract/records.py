"""What an eval result holds: one schema that every eval writes and the report reads.

A number is comparable with another only when its model, data, code and settings match, so a record
carries all four beside the numbers (as evalplus stores the dataset hash with each result, and
lm-evaluation-harness its task hashes):

  eval               which eval made it (`case2code`, `solverlearner`, `dynamicqa`)
  model_name         the run's name for the model (a manifest name, a harness name), or None
  model_fingerprint  the backend's identity of the weights and numerics it decoded with
  data_path          where the data came from; data_hash: 16 hex digits over what was evaluated
  git_commit         this code's commit (None outside a git checkout); versions: the libraries that decide numbers
  config             the eval's settings, JSON-able
  summary            scalar metrics only (str, int, float, bool or None), flat
  tables             name -> rows, each row a flat dict of scalars (structured, never Markdown)
  items_path         the per-item outputs (JSONL), relative to the record's directory, or None

Records are JSON with a `schema_version`; reading a record of another version, or one that lacks a field,
fails with one line naming the file.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

from patch_training.atomic import write_json_atomic
from patch_training.errors import UserError

SCHEMA_VERSION = 1
_SCALARS = (str, int, float, bool, type(None))
_VERSIONED_PACKAGES = ("jax", "flax", "numpy", "tokenizers", "transformers")


def git_commit() -> str | None:
    """HEAD of the checkout this code runs from, or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Python and the installed libraries whose versions can move a number."""
    found = {"python": platform.python_version()}
    for pkg in _VERSIONED_PACKAGES:
        try:
            found[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return found


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (`.item()`), so callers may pass what numpy computed."""
    return value.item() if hasattr(value, "item") and not isinstance(value, _SCALARS) else value


@dataclasses.dataclass
class EvalRecord:
    eval: str
    model_name: str | None
    model_fingerprint: str | None
    data_path: str | None
    data_hash: str | None
    git_commit: str | None
    config: dict[str, Any]
    summary: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]
    items_path: str | None
    versions: dict[str, str]

    @classmethod
    def create(cls, *, eval: str, model_name: str | None, model_fingerprint: str | None,
               data_path: str | None, data_hash: str | None, config: Mapping[str, Any],
               summary: Mapping[str, Any], tables: Mapping[str, list[Mapping[str, Any]]] | None = None,
               items_path: str | None = None, commit: str | None = None) -> EvalRecord:
        """A record of this process's run: the commit (unless given) and the versions are filled in here."""
        record = cls(eval=eval, model_name=model_name, model_fingerprint=model_fingerprint,
                     data_path=None if data_path is None else str(data_path), data_hash=data_hash,
                     git_commit=commit if commit is not None else git_commit(), config=dict(config),
                     summary={k: _plain(v) for k, v in summary.items()},
                     tables={name: [{k: _plain(v) for k, v in row.items()} for row in rows]
                             for name, rows in (tables or {}).items()},
                     items_path=items_path, versions=versions())
        record.check("the new record")
        return record

    def check(self, where: str) -> None:
        """Raise UserError (one line, naming `where`) when a field breaks the schema."""
        def bad(what: str) -> UserError:
            return UserError(f"{where}: eval record {what}")
        if not isinstance(self.eval, str) or not self.eval:
            raise bad("has no eval name")
        for name in ("model_name", "model_fingerprint", "data_path", "data_hash", "git_commit", "items_path"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise bad(f"field {name} is not a string or null")
        for name in ("config", "summary", "tables", "versions"):
            if not isinstance(getattr(self, name), dict):
                raise bad(f"field {name} is not an object")
        nested = sorted(k for k, v in self.summary.items() if not isinstance(v, _SCALARS))
        if nested:
            raise bad(f"summary holds non-scalar value(s) under {', '.join(nested)} (put structure in tables)")
        for name, rows in self.tables.items():
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise bad(f"table {name!r} is not a list of row objects")
            for i, row in enumerate(rows):
                cells = sorted(k for k, v in row.items() if not isinstance(v, _SCALARS))
                if cells:
                    raise bad(f"table {name!r} row {i} holds non-scalar cell(s) {', '.join(cells)}")

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    def write(self, path: str | Path) -> Path:
        """Atomically, keeping the order of summary keys and table columns (the report shows them in it)."""
        self.check(str(path))
        return write_json_atomic(path, self.to_json(), sort_keys=False)

    @classmethod
    def read(cls, path: str | Path) -> EvalRecord:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no eval record there")
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: eval record is not readable JSON ({e})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: eval record is not a JSON object")
        version = raw.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise UserError(f"{path}: eval record schema_version {version!r}, this code reads {SCHEMA_VERSION} "
                            "(rerun the eval to rewrite it)")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in raw]
        if missing:
            raise UserError(f"{path}: eval record misses field(s) {', '.join(missing)}")
        extra = sorted(set(raw) - set(names))
        if extra:
            raise UserError(f"{path}: eval record has unknown field(s) {', '.join(extra)}")
        record = cls(**raw)
        record.check(str(path))
        return record

    def table(self, name: str) -> list[dict[str, Any]]:
        """A table's rows ([] when the eval did not write it)."""
        return self.tables.get(name, [])
