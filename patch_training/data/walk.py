"""The one seeded epoch walk and the one host-slice rule every step-indexed dataset shares.

A walk maps a position (step · global batch + row in the batch) to an item id: position p is item
`perm_e[p mod n]` of epoch e = p div n, each epoch a fresh seeded permutation. Data is therefore a
pure function of the step, which is what exact resume needs. Each host reads a contiguous slice of
the global batch.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from patch_training.errors import UserError


class EpochWalk:
    """Position -> item id over concatenated epoch-wise permutations of `num_items` items.

    `seed_key` seeds each epoch's permutation as `default_rng([*seed_key, epoch])`; different users
    pass different keys so their shuffles are independent streams (rows: `(seed,)`, two-stage
    blocks: `(seed, 0x5747)`). `shuffle=False` walks items in order.
    """

    def __init__(self, num_items: int, seed_key: Sequence[int], shuffle: bool = True):
        self.num_items = int(num_items)
        self.seed_key = tuple(int(k) for k in seed_key)
        self.shuffle = shuffle
        # Per-instance cache (an lru_cache on a bound method would pin self).
        self._permutation = lru_cache(maxsize=4)(self._make_permutation)

    def _make_permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_items, dtype=np.int64)
        return np.random.default_rng([*self.seed_key, epoch]).permutation(self.num_items)

    def item_ids(self, positions: np.ndarray) -> np.ndarray:
        epochs, offsets = np.divmod(np.asarray(positions, np.int64), self.num_items)
        out = np.empty_like(offsets)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._permutation(int(e))[offsets[sel]]
        return out


def step_positions(step: int, global_batch_size: int) -> np.ndarray:
    """Walk positions of the whole global batch at `step`."""
    start = int(step) * int(global_batch_size)
    return np.arange(start, start + global_batch_size, dtype=np.int64)


def host_slice(global_batch_size: int, process_index: int = 0, process_count: int = 1) -> slice:
    """This host's contiguous share of a global batch; refuses sizes that do not split evenly."""
    if global_batch_size <= 0:
        raise UserError(f"global batch size must be positive, got {global_batch_size}")
    if not 0 <= process_index < process_count:
        raise UserError(f"process_index {process_index} is outside [0, {process_count})")
    if global_batch_size % process_count:
        raise UserError(f"global batch size {global_batch_size} is not divisible by the "
                        f"process count {process_count}")
    per_host = global_batch_size // process_count
    return slice(process_index * per_host, (process_index + 1) * per_host)
