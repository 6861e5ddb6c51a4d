"""A row-store dataset whose read-ahead is slow and can stall half-way through a read (trainer tests).

`testing.slow_reads(data=...)` keeps the dataset and its ArrayRecord reader and wraps only the reader:
reads made by the prefetch thread read half their rows, sleep `delay_s`, then read the rest, so the input
pipeline is the slower side and the thread is usually inside a read; the read numbered `stall_at_read`
(0 = the first prefetched read) prints one line to stdout and stops there, half read, until the test's
SIGKILL. Reads in the main thread (a run's first step) pass straight through.
"""
from __future__ import annotations

import os
import threading
import time

import gin
import numpy as np

STALLED = "prefetch stalled"


class _SlowReader:
    def __init__(self, inner, delay_s: float, stall_at_read: int | None):
        self.inner, self.delay_s, self.stall_at_read = inner, delay_s, stall_at_read
        self.prefetch_depth = inner.prefetch_depth
        self._prefetch_reads = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, sorted_ids: np.ndarray) -> dict[str, np.ndarray]:
        if threading.current_thread() is threading.main_thread():
            return self.inner.read(sorted_ids)
        n, self._prefetch_reads = self._prefetch_reads, self._prefetch_reads + 1
        half = len(sorted_ids) // 2
        first = self.inner.read(sorted_ids[:half])
        time.sleep(self.delay_s)
        if n == self.stall_at_read:
            print(f"{STALLED} in read {n} after {half} of {len(sorted_ids)} rows", flush=True)
            time.sleep(300)
            os._exit(3)  # never killed: end rather than finish a run the test meant to interrupt
        rest = self.inner.read(sorted_ids[half:])
        return {k: np.concatenate([first[k], rest[k]]) for k in first}


@gin.configurable(module="testing")
def slow_reads(*, data, delay_s: float = 0.0, stall_at_read: int | None = None):
    from patch_training.data.step_dataset import StepIndexedDataset
    reader = _SlowReader(data._reader, delay_s, stall_at_read)
    return StepIndexedDataset(data.directory, seed=data.seed, shuffle=data.shuffle, opened=(data.meta, reader))
