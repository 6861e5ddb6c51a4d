"""When to save: step-based and time-based policies in one pure, clock-injectable decision.

Kept apart from the orbax plumbing so the decision can be tested exactly: `should_save(step, now)`
looks only at its arguments and at the last recorded save, never at a real clock.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class SavePolicy:
    """Save when `step` is a multiple of `every_steps`, or `every_seconds` passed since the last save.

    Forced saves (the final step, a preemption) bypass the policy; call `record_save` after any save
    so the time-based clock restarts from it. `now` is any monotonic clock in seconds.
    """

    every_steps: int | None = None
    every_seconds: float | None = None
    last_save_step: int | None = None
    last_save_time: float = 0.0

    def __post_init__(self) -> None:
        if self.every_steps is not None and self.every_steps <= 0:
            raise ValueError(f"every_steps must be positive or None, got {self.every_steps}")
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise ValueError(f"every_seconds must be positive or None, got {self.every_seconds}")

    def start(self, step: int | None, now: float) -> None:
        """Begin timing at `now`, counting `step` (the restored one, if any) as already saved."""
        self.last_save_step = step
        self.last_save_time = now

    def should_save(self, step: int, now: float) -> bool:
        if self.last_save_step is not None and step <= self.last_save_step:
            return False  # already on disk (e.g. right after a resume)
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        if self.every_seconds is not None and now - self.last_save_time >= self.every_seconds:
            return True
        return False

    def record_save(self, step: int, now: float) -> None:
        self.last_save_step = step
        self.last_save_time = now
