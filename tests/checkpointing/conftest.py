"""Fixtures for the checkpoint tests."""
from pathlib import Path

import pytest


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
