"""Where the published reference data lives (never copied into this repository).

Default: `../shared/data` next to the repository root; override with `PATCHTRAIN_SHARED_DATA`.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PATCHTRAIN_SHARED_DATA"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The reference-data directory (it may not exist; callers check and say so)."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else (_REPO_ROOT.parent / "shared" / "data")


def shared_data_path(*parts: str) -> Path:
    return shared_data_dir().joinpath(*parts)
