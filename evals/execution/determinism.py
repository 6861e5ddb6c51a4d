"""The data pipeline's run-twice rule: keep only outputs that two independent runs agree on.

Catches time, `id()`, unseeded randomness, set order under hash randomisation, and import-time tampering
that does not reproduce. The two attempts of a program run on *different workers* (attempt 0 on worker k,
attempt 1 on worker k+1): different zygote interpreters, different sandbox uids, different address-space
layouts. With a one-worker pool that is impossible, so the worker's zygote is replaced by a fresh one
between the two passes instead (a new interpreter and address-space layout; the same uid).
"""
from __future__ import annotations

import dataclasses

from evals.execution.pool import Program, ProgramResult, SandboxPool
from evals.execution.protocol import OK


def run_twice_results(pool: SandboxPool, programs: list[Program]) -> dict[str, tuple[ProgramResult, ProgramResult]]:
    """-> task_id -> (attempt 0, attempt 1) results, each attempt on a different worker when the pool has
    two or more."""
    n = len(pool.workers)
    runs: dict[tuple[str, int], ProgramResult] = {}
    if n >= 2:
        jobs = []
        for k, p in enumerate(programs):
            jobs.append(dataclasses.replace(p, attempt=0, worker=k % n))
            jobs.append(dataclasses.replace(p, attempt=1, worker=(k + 1) % n))
        for r in pool.run(jobs):
            runs[(r.task_id, r.attempt)] = r
    else:
        for attempt in (0, 1):
            if attempt:
                pool.restart_worker(0)
            for r in pool.run([dataclasses.replace(p, attempt=attempt, worker=0) for p in programs]):
                runs[(r.task_id, r.attempt)] = r
    return {p.task_id: (runs[(p.task_id, 0)], runs[(p.task_id, 1)]) for p in programs}


def run_twice(pool: SandboxPool, programs: list[Program]) -> dict[str, list[bool]]:
    """-> task_id -> per-call flag: True when both runs returned (status ok) the same output."""
    agreed = {}
    for tid, (a, b) in run_twice_results(pool, programs).items():
        agreed[tid] = [x["status"] == y["status"] == OK and x["output"] == y["output"]
                       for x, y in zip(a.calls, b.calls)]
    return agreed
