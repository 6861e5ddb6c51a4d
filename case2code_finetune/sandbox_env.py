"""A sandbox pool whose interpreters use another string-hash seed (for the run-twice rule).

`evals.execution` pins PYTHONHASHSEED=0 in every zygote, so two runs there cannot disagree on set order.
Until the pool takes a seed itself, this sets the launch environment's seed for the lifetime of one pool
(zygotes and any restarts read it when they start) and puts it back on close. Passes run one after another,
so no other pool starts while it is changed. When the sandbox's internals no longer expose that table,
we log once and run with the default seed (the run-twice rule still compares different interpreters).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator

from evals.execution import Limits, SandboxPool

log = logging.getLogger(__name__)
_LOCK = threading.Lock()


@contextlib.contextmanager
def sandbox_pool(num_workers: int | None, limits: Limits, *, hash_seed: int | None = None) -> Iterator[SandboxPool]:
    """A SandboxPool; with `hash_seed`, its interpreters hash strings with that seed."""
    if hash_seed is None:
        with SandboxPool(num_workers, limits=limits) as pool:
            yield pool
        return
    try:
        from evals.execution import launch  # noqa: PLC0415 - internal table, see the module docstring
        env = launch.SANDBOX_ENV
        assert isinstance(env, dict) and "PYTHONHASHSEED" in env
    except (ImportError, AttributeError, AssertionError):
        log.warning("sandbox launch environment not found: second pass uses the default hash seed")
        with SandboxPool(num_workers, limits=limits) as pool:
            yield pool
        return
    with _LOCK:
        old = env["PYTHONHASHSEED"]
        env["PYTHONHASHSEED"] = str(hash_seed)
        try:
            with SandboxPool(num_workers, limits=limits) as pool:
                yield pool
        finally:
            env["PYTHONHASHSEED"] = old
