"""Fixtures for the checkpoint tests."""
from pathlib import Path

import pytest


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"


def pytest_collection_modifyitems(items):
    # Orbax's background asyncio loop can be torn down after a failed (expected) restore; harmless.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"))
