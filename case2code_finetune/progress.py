"""Periodic progress lines with rate and ETA for long loops (logging, not a bar: it also reads well in logs)."""
from __future__ import annotations

import logging
import time


class Progress:
    """Call `update(n_done)`; logs at most every `every_s` seconds: done/total, rate, ETA."""

    def __init__(self, what: str, total: int | None, *, every_s: float = 5.0, log: logging.Logger | None = None):
        self.what, self.total, self.every_s = what, total, every_s
        self.log = log or logging.getLogger("case2code_finetune")
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, done: int, *, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        if self.total:
            eta = f"{(self.total - done) / rate:.0f}s" if rate > 0 else "?"
            self.log.info("%s: %d/%d (%.1f%%), %.1f/s, elapsed %.0fs, ETA %s", self.what, done, self.total,
                          100.0 * done / self.total, rate, elapsed, eta)
        else:
            self.log.info("%s: %d, %.1f/s, elapsed %.0fs", self.what, done, rate, elapsed)

    def finish(self) -> None:
        self.update(self.done, force=True)
