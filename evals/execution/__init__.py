"""Sandboxed execution of untrusted Python (see ../shared/SANDBOX.md for the design and threat model).

Public API:
    SandboxPool(num_workers=None, *, tier=None, limits=None, hash_seed=None) -> pool; pool.run(programs, journal=None)
        tier=None: $EXECUTOR_TIER, else the strongest tier that passes its probe; a named tier must pass
        its own probe; T3 is refused unless EXECUTOR_ALLOW_WEAK=1. hash_seed: every interpreter's
        PYTHONHASHSEED, restarts included (None: 0).
    Program(task_id, source, entry, calls | calls_src+n_calls, mode="calls"|"script", limits=None,
            compat=None|"case2code", worker=None)
    case2code_program(task_id, code, func_name, example_str, n_calls) -> Program  (reference semantics)
    run_twice(pool, programs) -> {task_id: [agree per call]}  (attempts on different workers)
    Limits(...), probe_tier() -> {"tier": ...}, outputs_match(call_result, expected, float_tol=None)
    run_program(source, entry, calls, limits=None) -> ProgramResult   (one-off, starts a small pool)
The wire protocol between harness, zygote and child (frames, statuses, message kinds, Limits) is protocol.py.
"""
from evals.execution.canonical import BadExpected, outputs_match, parse_expected, to_case2code
from evals.execution.protocol import Limits
from evals.execution.pool import Program, ProgramResult, SandboxPool
from evals.execution.probe import SandboxUnavailable, probe_tier, require_tier, resolve_tier
from evals.execution.case2code import case2code_program
from evals.execution.determinism import run_twice


def run_program(source: str, entry: str, calls: list, limits: Limits | None = None) -> ProgramResult:
    """Run one program on its calls in a one-worker pool (convenient, not fast: use SandboxPool for batches)."""
    with SandboxPool(1, limits=limits) as pool:
        return pool.run_one(Program("single", source, entry, calls))


__all__ = ["BadExpected", "Limits", "Program", "ProgramResult", "SandboxPool", "SandboxUnavailable",
           "case2code_program", "outputs_match", "parse_expected", "probe_tier", "require_tier", "resolve_tier",
           "run_program", "run_twice", "to_case2code"]
