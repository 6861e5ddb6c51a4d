"""The test session's one row store: a tiny JSONL corpus (one malformed line) built with Beam, in process.

Built once per test session, also under pytest-xdist: the workers share one directory and the first one
to get the lock builds (each worker registers the corpus itself: the registry is per process). The data
tests compare its rows with the memmap cache's; the trainer tests train from it in a subprocess.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tests.support.corpora import write_jsonl

CORPUS = "store_jsonl"
BYTE = {"kind": "byte"}
L = 32
IN_PROCESS = ["--direct_running_mode=in_memory"]
# The row sets the store holds: packed, padded, and concat patch rows (K=2).
ROW_SETS = ({"sequence_length": L}, {"sequence_length": L, "pack": False},
            {"sequence_length": 2 * L, "patch_size": 2})


@dataclasses.dataclass(frozen=True)
class SessionStore:
    corpus: str        # the registered corpus name
    files: list[str]   # its JSONL shards (a subprocess registers the same corpus from these)
    root: Path         # the store root (`make_dataset.row_stores = {corpus: root}`)


def build(root, corpus: str, **kw) -> str:
    """One row set of `corpus` under `root`, on Beam's DirectRunner in this process."""
    from patch_training.data import store_build
    return store_build.build_store(root=str(root), task=corpus, split="train", vocab=BYTE, rows_per_shard=5,
                                   pipeline_args=IN_PROCESS, workers=1, **kw)


def _write_corpus(d: Path) -> list[str]:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "x", "yy"]
    texts = [[" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(12)] for _ in range(3)]
    return [str(write_jsonl(d / f"part{i}.jsonl", t, bad_lines=["{not json"] if i == 1 else []))
            for i, t in enumerate(texts)]


def session_store(tmp_path_factory) -> SessionStore:
    from patch_training.data import register_jsonl_corpus
    from patch_training.data.factory import build_lock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's directory, above each worker's own
    home = shared / "session_row_store"
    done = home / "built"
    with build_lock(shared / "session_row_store.lock"):
        if not done.exists():
            (home / "corpus").mkdir(parents=True, exist_ok=True)
            files = _write_corpus(home / "corpus")
            corpus = register_jsonl_corpus(name=CORPUS, train_files=files)
            for kw in ROW_SETS:
                build(home / "stores", corpus, **kw)
            done.write_text("\n".join(files))
    files = done.read_text().splitlines()
    return SessionStore(register_jsonl_corpus(name=CORPUS, train_files=files), files, home / "stores")
