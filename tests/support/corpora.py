"""Helpers that write small corpora for the data tests."""
from __future__ import annotations

import json
from pathlib import Path


def write_code_corpus(root: Path, n_files: int = 24) -> Path:
    """Deterministic small Python files of varied length (some longer than a row)."""
    for i in range(n_files):
        pkg = root / ("pkg" if i % 2 else "lib") / f"sub{i % 3}"
        pkg.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{j}(x):\n    return x * {i} + {j}\n\n" for j in range(1 + (i * 7) % 23))
        (pkg / f"mod{i}.py").write_text(f"# module {i}\n" + body)
    (root / "lib" / "empty.py").write_text("")  # blank files are skipped, not errors
    (root / "notes.txt").write_text("not python")  # other suffixes are ignored
    return root


def write_jsonl(path: Path, texts: list, bad_lines: list[str] = ()) -> Path:
    lines = [json.dumps({"text": t}) for t in texts] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n")
    return path
