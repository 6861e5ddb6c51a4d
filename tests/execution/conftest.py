"""Shared sandbox fixtures: one pool for the whole directory, started before any gold data is loaded."""
from __future__ import annotations

import os

import pytest

# Planted in the harness's environment before any worker starts; it must never reach a sandboxed program.
SECRET = "sbx-secret-7f3a9c"
os.environ["SBX_FAKE_SECRET_TOKEN"] = SECRET


@pytest.fixture(scope="session")
def pool():
    from evals.execution import Limits, SandboxPool

    p = SandboxPool(2, limits=Limits(wall_s=1.0, program_wall_s=10.0))
    yield p
    p.close()
