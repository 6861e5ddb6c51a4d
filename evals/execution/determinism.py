"""The data pipeline's run-twice rule: keep only outputs that two independent runs agree on.

Catches time, `id()`, unseeded randomness, set order under hash randomisation, and import-time tampering
that does not reproduce. Each program runs as attempt 0 and attempt 1 in separate fresh children.
"""
from __future__ import annotations

import dataclasses

from evals.execution.pool import Program, SandboxPool


def run_twice(pool: SandboxPool, programs: list[Program]) -> dict[str, list[bool]]:
    """-> task_id -> per-call flag: True when both runs produced the same status and output."""
    firsts = [dataclasses.replace(p, attempt=0) for p in programs]
    seconds = [dataclasses.replace(p, attempt=1) for p in programs]
    runs: dict[tuple[str, int], list[dict]] = {}
    for batch in (firsts, seconds):  # separate passes, so the two attempts never share a child
        for r in pool.run(batch):
            runs[(r.task_id, r.attempt)] = r.calls
    agreed = {}
    for p in programs:
        a, b = runs[(p.task_id, 0)], runs[(p.task_id, 1)]
        agreed[p.task_id] = [x["status"] == y["status"] == "ok" and x["output"] == y["output"]
                             for x, y in zip(a, b)]
    return agreed
