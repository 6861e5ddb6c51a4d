"""Append-only JSONL result journal keyed by (task_id, attempt); an interrupted run resumes from it."""
from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    """One JSON object per finished program. A torn last line (killed mid-write) is ignored and counted."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: dict[tuple[str, int], dict] = {}
        self.torn_lines = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        rec = json.loads(raw)
                        self.done[(str(rec["task_id"]), int(rec.get("attempt", 0)))] = rec
                    except (ValueError, KeyError, TypeError):
                        self.torn_lines += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        if self.torn_lines and self.path.stat().st_size:
            self._f.write(b"\n")  # make sure the next record starts on its own line

    def has(self, task_id: str, attempt: int = 0) -> bool:
        return (str(task_id), attempt) in self.done

    def record(self, rec: dict) -> None:
        self._f.write(json.dumps(rec).encode() + b"\n")
        self.done[(str(rec["task_id"]), int(rec.get("attempt", 0)))] = rec

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()
