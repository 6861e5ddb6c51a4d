"""Seeded kill moments for the SIGKILL tests: each run draws a new seed, so runs keep exploring different
moments; a failure names the seed, and RESUME_KILL_SEED=<seed> replays that moment."""
from __future__ import annotations

import contextlib
import os
import random


def kill_seed() -> int:
    pinned = os.environ.get("RESUME_KILL_SEED")
    return int(pinned) if pinned else random.SystemRandom().randrange(2**32)


@contextlib.contextmanager
def noted_on_failure(note: str):
    """Add `note` to whatever fails inside (pytest prints exception notes under the traceback)."""
    try:
        yield
    except BaseException as e:
        e.add_note(note)
        raise
