"""Reading the next steps' host batches ahead, in one background thread.

Data is a pure function of the step, so the batches of steps s+1..s+depth can be read while step s
trains: a prefetched batch is exactly the batch a direct call would return, and a resumed run (which
starts at its checkpoint's step) prefetches from there. Only what is asked for next is ever read ahead.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any


class PrefetchingBatches:
    """`data.host_batch` with the following `depth` steps read ahead; other attributes pass through."""

    def __init__(self, data: Any, depth: int = 2):
        self.data, self.depth = data, max(1, int(depth))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._pending: dict[tuple, concurrent.futures.Future] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0, process_count: int = 1):
        key = (int(step), global_batch_size, process_index, process_count)
        future = self._pending.pop(key, None)
        # Anything queued for another step or shape is no longer wanted (a jump, a resume, a new size).
        for stale in [k for k in self._pending if not (k[1:] == key[1:] and step < k[0] <= step + self.depth)]:
            self._pending.pop(stale).cancel()
        for ahead in range(step + 1, step + self.depth + 1):
            k = (ahead, *key[1:])
            if k not in self._pending:
                self._pending[k] = self._pool.submit(self.data.host_batch, *k)
        if future is None:
            return self.data.host_batch(*key)
        return future.result()

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


def with_prefetch(data: Any) -> Any:
    """`data` wrapped for read-ahead when it asks for it (`prefetch_depth` > 0: the row store)."""
    depth = int(getattr(data, "prefetch_depth", 0) or 0)
    return PrefetchingBatches(data, depth) if depth > 0 and hasattr(data, "host_batch") else data
