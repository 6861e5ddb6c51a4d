"""Where data lives: the run/cache directory and the read-only shared reference data."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Environment overrides, so CI and users can point elsewhere without editing configs.
CACHE_ENV = "PATCH_TRAINING_CACHE_DIR"
SHARED_DATA_ENV = "PATCH_TRAINING_SHARED_DATA"


def default_cache_dir() -> Path:
    """`$PATCH_TRAINING_CACHE_DIR`, else `<repo>/.cache/data` (git-ignored; never the home dir)."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "data")


def shared_data_dir() -> Path:
    """`$PATCH_TRAINING_SHARED_DATA`, else `../shared/data` next to the repository root."""
    return Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")


def wikitext_test_file() -> Path:
    return shared_data_dir() / "wikitext" / "wikitext_document_level-test.json"
