"""Small JSONL helpers: atomic whole-file writes (no partial file is ever visible) and an append journal."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator


def write_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a JSONL file; a torn last line (a killed append) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


class AppendJournal:
    """Append-only JSONL of finished units keyed by `id`, fsynced per append; reopening resumes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        if self.path.exists():
            for rec in read_jsonl(self.path):
                if isinstance(rec, dict) and "id" in rec:
                    self.done[rec["id"]] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            self._f.write("\n")  # a torn last line stays alone on its line

    def append_many(self, recs: list[dict]) -> None:
        for r in recs:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
            self.done[r["id"]] = r
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
