"""Per-program resource limits (defaults from ../shared/SANDBOX.md §3), overridable per task."""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one program may use. `wall_s` is per call; the CPU rlimit is derived from it."""

    wall_s: float = 2.0              # per call, wall clock (the zygote's deadline)
    load_wall_s: float | None = None  # module top level; defaults to wall_s
    program_wall_s: float = 30.0      # all calls of one program together
    memory_bytes: int = 1 << 30       # RLIMIT_AS (numpy needs more than stdlib-only code)
    fsize_bytes: int = 16 << 20       # RLIMIT_FSIZE
    nofile: int = 64
    nproc: int | None = 1             # 1 = no threads and no forks
    output_cap: int = 64 << 10        # one call's canonical output
    task_output_cap: int = 8 << 20    # all of a program's result lines
    stdout_cap: int = 1 << 20         # script mode: captured stdout

    def to_wire(self) -> dict:
        d = dataclasses.asdict(self)
        d["load_wall_s"] = self.load_wall_s if self.load_wall_s is not None else self.wall_s
        d["cpu_s"] = max(1, math.ceil(self.wall_s))
        return d

    def task_budget_s(self, n_calls: int) -> float:
        """The most a well-behaved zygote can take for this program (the harness adds its grace)."""
        load = self.load_wall_s if self.load_wall_s is not None else self.wall_s
        return min(self.program_wall_s, load + n_calls * self.wall_s) + 0.5 * (1 + n_calls // 8)
