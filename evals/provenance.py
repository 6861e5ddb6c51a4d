"""Where an eval's outputs came from, for its resumable stages: the hashes of the evaluated data, and the
run record (`run.json`) a rerun into the same directory must agree with. The result itself is an
`EvalRecord` (patch_training.contract.records), which owns the commit and versions read here.

A `provenance` object, the shape of a run record:
  model_fingerprint  the backend's identity of the weights (LanguageModel.fingerprint)
  data_hash          16 hex digits of a sha256 over the evaluated data (files, or the items themselves)
  git_commit         the commit of this code (None outside a git checkout)
  versions           python and the libraries that decide the numbers
  settings           sampling and protocol options, JSON-able
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from patch_training.contract.records import git_commit, versions
from patch_training.errors import UserError


def files_hash(paths: Iterable[str | Path]) -> str:
    """sha256 over the files' bytes, in the order given (each prefixed by its length, so files cannot blur)."""
    h = hashlib.sha256()
    for p in paths:
        data = Path(p).read_bytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def records_hash(records: Iterable[Any]) -> str:
    """sha256 over JSON-able records (one canonical JSON line each, in the order given)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, default=repr).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def provenance(*, model_fingerprint: str | None, data_hash: str, settings: dict[str, Any],
               data: str | None = None) -> dict[str, Any]:
    """The one provenance shape every eval writes into its results."""
    return {"model_fingerprint": model_fingerprint, "data_hash": data_hash, "data": data,
            "git_commit": git_commit(), "versions": versions(), "settings": settings}


def check_run_record(path: Path, record: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """A resumable eval's record of what its outputs came from: written by the first run; a later run into the
    same directory must agree on `keys` (default: every key), or it is refused with one line."""
    if path.is_file():
        old = json.loads(path.read_text())
        names = keys if keys is not None else sorted(set(old) | set(record))
        diff = [k for k in names if old.get(k) != record.get(k)]
        if diff:
            raise UserError(f"{path.parent} holds a run with other settings ({', '.join(diff)} differ); "
                            f"use another --out or remove {path}")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
