"""Sandboxed execution of untrusted Python (see ../shared/SANDBOX.md for the design and threat model).

Public API:
    SandboxPool(num_workers=None, *, tier=None, limits=None) -> pool; pool.run(programs, journal=None)
    Program(task_id, source, entry, calls | calls_src+n_calls, mode="calls"|"script", limits=None)
    Limits(...), probe_tier() -> {"tier": ...}, outputs_match(call_result, expected, float_tol=None)
    run_program(source, entry, calls, limits=None) -> ProgramResult   (one-off, starts a small pool)
"""
from evals.execution.canonical import BadExpected, outputs_match, parse_expected, to_case2code
from evals.execution.limits import Limits
from evals.execution.pool import Program, ProgramResult, SandboxPool
from evals.execution.probe import SandboxUnavailable, probe_tier


def run_program(source: str, entry: str, calls: list, limits: Limits | None = None) -> ProgramResult:
    """Run one program on its calls in a one-worker pool (convenient, not fast: use SandboxPool for batches)."""
    with SandboxPool(1, limits=limits) as pool:
        return pool.run_one(Program("single", source, entry, calls))


__all__ = ["BadExpected", "Limits", "Program", "ProgramResult", "SandboxPool", "SandboxUnavailable",
           "outputs_match", "parse_expected", "probe_tier", "run_program", "to_case2code"]
