"""Data as a pure function of the step (Levanter style), over rows materialised in a cache or a store.

`StepIndexedDataset.host_batch(step, ...)` reads rows by index: which rows make up step `s` depends only
on (seed, s), so exact resume needs only the step, and every host computes the same global batch and
reads only its own contiguous slice. The rows come from a `RowReader`: the memory-mapped local cache
(`open_rows`) or the ArrayRecord row store (`row_store.open_store`), behind the same interface.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from patch_training.data.walk import EpochWalk, host_slice, step_positions
from patch_training.errors import UserError

FEATURES = ("decoder_target_tokens", "decoder_input_tokens", "decoder_segment_ids",
            "decoder_positions", "decoder_loss_weights")
META_FILE = "meta.json"
# Arrays stored per row; inputs and loss weights are derived (see `rows`).
STORED = ("targets", "segment_ids", "positions")


def open_rows(directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Memory-map a finished row cache (meta.json is written last, so its presence means complete)."""
    meta = json.loads((directory / META_FILE).read_text())
    n, length = meta["num_rows"], meta["sequence_length"]
    arrays = {}
    for name in STORED:
        dtype = np.dtype(meta["dtypes"][name])
        arrays[name] = (np.memmap(directory / f"{name}.bin", dtype=dtype, mode="r", shape=(n, length))
                        if n else np.zeros((0, length), dtype))
    return meta, arrays


class MemmapRows:
    """The local cache's reader: the stored arrays of rows `ids` (sorted) by memmap indexing."""

    prefetch_depth = 0  # page-cache reads are fast enough in the trainer's own thread

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def read(self, sorted_ids: np.ndarray) -> dict[str, np.ndarray]:
        return {k: a[sorted_ids] for k, a in self.arrays.items()}


class StepIndexedDataset:
    """Deterministic batches by step from a row cache or store.

    Attributes: `num_rows`, `sequence_length` (tokens per row), `patch_size`, `mode`
    ('packed' | 'padded' | 'concat'), `vocab_spec`, `meta` (counts, malformed-row report),
    `prefetch_depth` (batches the trainer reads ahead in a thread: non-zero for the store).
    """

    def __init__(self, directory: str | Path, *, seed: int = 0, shuffle: bool = True,
                 opened: tuple[dict, Any] | None = None):
        self.directory = directory if opened is not None else Path(directory)
        if opened is None:
            meta, arrays = open_rows(self.directory)
            opened = (meta, MemmapRows(arrays))
        self.meta, self._reader = opened
        self.prefetch_depth: int = int(getattr(self._reader, "prefetch_depth", 0))
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_rows: int = self.meta["num_rows"]
        self.sequence_length: int = self.meta["sequence_length"]
        self.patch_size: int = self.meta["patch_size"]
        self.mode: str = self.meta["mode"]
        self.vocab_spec: dict = self.meta["vocab_spec"]
        self._walk = EpochWalk(self.num_rows, (self.seed,), shuffle=self.shuffle)

    def __repr__(self) -> str:
        return (f"StepIndexedDataset({self.meta['task']}/{self.meta['split']}, rows={self.num_rows}, "
                f"length={self.sequence_length}, mode={self.mode}, patch_size={self.patch_size})")

    @property
    def fingerprint(self) -> str:
        """Hash of everything that shaped the rows (corpus content, vocab, length, mode): store it
        with checkpoints to refuse resuming on different data."""
        return str(self.meta.get("fingerprint") or Path(str(self.directory)).name.rsplit("-", 1)[-1])

    @property
    def num_tokens(self) -> int:
        return int(self.meta["num_tokens"])

    def global_row_ids(self, step: int, global_batch_size: int) -> np.ndarray:
        """Row ids of the whole global batch at `step`: a walk through epoch-wise permutations."""
        if self.num_rows == 0:
            raise UserError(f"dataset {self.directory} has no rows")
        return self._walk.item_ids(step_positions(step, global_batch_size))

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> dict[str, np.ndarray]:
        """This host's contiguous slice of the global batch at `step` (a pure function of step)."""
        part = host_slice(global_batch_size, process_index, process_count)
        return self.rows(self.global_row_ids(step, global_batch_size)[part])

    def eval_batches(self, global_batch_size: int, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """One pass over all rows in order; the last global batch is padded with zero-weight rows.

        Every host yields the same number of batches (padding rows are all zeros), so collective
        evaluation steps stay in lock-step across hosts.
        """
        part = host_slice(global_batch_size, process_index, process_count)
        per_host = part.stop - part.start
        for start in range(0, self.num_rows, global_batch_size):
            lo = start + process_index * per_host
            ids = np.arange(lo, min(lo + per_host, self.num_rows), dtype=np.int64)
            batch = self.rows(ids)
            if len(ids) < per_host:
                batch = {k: np.concatenate([v, np.zeros((per_host - len(ids),) + v.shape[1:], v.dtype)])
                         for k, v in batch.items()}
            yield batch

    def num_eval_batches(self, global_batch_size: int) -> int:
        return -(-self.num_rows // global_batch_size)

    def rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The model-ready arrays of rows `ids` (in that order): the public row API (`RowSource`)."""
        ids = np.asarray(ids, np.int64)
        # Sorted reads are friendlier to the page cache; restore the requested order afterwards.
        order = np.argsort(ids, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        sorted_ids = ids[order]
        stored = self._reader.read(sorted_ids)
        targets = stored["targets"].astype(np.int32)[inverse]
        segments = stored["segment_ids"].astype(np.int32)[inverse]
        positions = stored["positions"].astype(np.int32)[inverse]
        if self.patch_size > 1:
            # Patch rows: the model consumes the raw K*T tokens and the patch loss shifts by a patch.
            inputs = targets.copy()
        else:
            # seqio's autoregressive inputs: shift right inside each segment, 0 at a segment start.
            inputs = np.zeros_like(targets)
            inputs[:, 1:] = targets[:, :-1]
            inputs[:, 1:] *= segments[:, 1:] == segments[:, :-1]
        return {
            "decoder_target_tokens": targets,
            "decoder_input_tokens": inputs,
            "decoder_segment_ids": segments,
            "decoder_positions": positions,
            "decoder_loss_weights": (targets != 0).astype(np.float32),
        }


def measure_pipeline_tokens_per_s(dataset: StepIndexedDataset, global_batch_size: int, steps: int,
                                  process_index: int = 0, process_count: int = 1,
                                  start_step: int = 0) -> dict[str, float]:
    """Time `steps` calls of `host_batch`; tokens/s counts every position of the returned rows."""
    dataset.host_batch(start_step, global_batch_size, process_index, process_count)  # warm page cache
    t0 = time.perf_counter()
    tokens = 0
    for s in range(start_step, start_step + steps):
        b = dataset.host_batch(s, global_batch_size, process_index, process_count)
        tokens += b["decoder_target_tokens"].size
    dt = time.perf_counter() - t0
    return {"pipeline_tokens_per_s": tokens / dt if dt > 0 else float("inf"),
            "seconds_per_batch": dt / max(steps, 1), "tokens": tokens, "steps": steps}
