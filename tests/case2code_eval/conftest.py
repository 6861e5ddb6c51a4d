"""One sandbox pool and the official rows for the whole folder (skips without ../shared/data)."""
import json

import pytest

from patch_training.shared_data import shared_data_path


@pytest.fixture(scope="package")
def pool():
    from evals.case2code.judge import JUDGE_LIMITS
    from evals.execution import SandboxPool
    with SandboxPool(2, limits=JUDGE_LIMITS) as p:
        yield p


@pytest.fixture(scope="package")
def official_rows(pool):
    path = shared_data_path("case2code", "test.jsonl")
    if not path.is_file():
        pytest.skip(f"Case2Code test set not found at {path}")
    from evals.case2code.data import load_rows
    return load_rows(path)[0]
