"""Where data lives: the run/cache directory and the read-only shared reference data."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Environment overrides, so CI and users can point elsewhere without editing configs.
CACHE_ENV = "PATCH_TRAINING_CACHE_DIR"


def default_cache_dir() -> Path:
    """`$PATCH_TRAINING_CACHE_DIR`, else `<repo>/.cache/data` (git-ignored; never the home dir)."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "data")


# One locator for the shared reference data for the whole repository (env var PATCHTRAIN_SHARED_DATA).
from patch_training.shared_data import ENV_VAR as SHARED_DATA_ENV, shared_data_dir  # noqa: E402,F401


def wikitext_test_file() -> Path:
    return shared_data_dir() / "wikitext" / "wikitext_document_level-test.json"
