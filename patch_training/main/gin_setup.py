"""Register every configurable a run file may name, then parse (one-line errors)."""
from __future__ import annotations

from typing import Sequence

import patch_training.configurables  # noqa: F401  (registers everything gin files name)
from patch_training.gin_utils import parse_gin


def parse_run_gin(gin_files: Sequence[str], bindings: Sequence[str] = (), search_path: Sequence[str] = (),
                  finalize: bool = True) -> None:
    """`parse_gin` after every configurable is registered, so an unknown name fails with one line."""
    parse_gin(gin_files, bindings, search_path, finalize=finalize)
