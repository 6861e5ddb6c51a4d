"""SolverLearner test fixtures: one sandbox pool for the folder (started before any gold data is loaded), and
one problem bank over the shared data (tests that need the data skip with a clear message without it)."""
from __future__ import annotations

import pytest

from patch_training.shared_data import shared_data_dir


@pytest.fixture(scope="package")
def sl_pool():
    from evals.execution import Limits, SandboxPool

    p = SandboxPool(2, limits=Limits(wall_s=1.0, program_wall_s=5.0))
    yield p
    p.close()


@pytest.fixture(scope="package")
def data_dir():
    d = shared_data_dir()
    if not (d / "counterfactual").is_dir() or not (d / "wikitext").is_dir():
        pytest.skip(f"shared data not found at {d} (set PATCHTRAIN_SHARED_DATA)")
    return d


@pytest.fixture(scope="package")
def bank(data_dir):
    from evals.solverlearner.tasks import ProblemBank, make_tasks

    return ProblemBank(make_tasks(cipher_words=40), data_dir, n_shots=4)
