"""A small deterministic step-indexed dataset for trainer tests (no corpus, no tokenizer).

Rows are packed "documents" of a learnable pattern (arithmetic token sequences) so loss falls
within a few steps; every batch is a pure function of (seed, step), like the real pipeline.
"""
from __future__ import annotations

import time

import gin
import numpy as np


@gin.configurable(module="testing")
class SyntheticData:
    def __init__(self, *, vocab_size: int = 64, sequence_length: int = 32, seed: int = 0, num_eval_rows: int = 16,
                 nan_at_step: int | None = None, delay_s: float = 0.0):
        self.vocab_size, self.sequence_length, self.seed = vocab_size, sequence_length, seed
        self.num_rows = num_eval_rows
        self.nan_at_step = nan_at_step  # poison that step's loss weights: the loss becomes NaN
        self.delay_s = delay_s          # slow the "input pipeline" so a test can kill mid-run

    def _rows(self, row_ids: np.ndarray) -> dict[str, np.ndarray]:
        n, L, V = len(row_ids), self.sequence_length, self.vocab_size
        targets = np.zeros((n, L), np.int32)
        segments = np.zeros((n, L), np.int32)
        positions = np.zeros((n, L), np.int32)
        for r, rid in enumerate(row_ids):
            rng = np.random.default_rng([self.seed, int(rid)])
            pos, seg = 0, 1
            while pos < L:
                length = int(rng.integers(4, L // 2 + 1))
                start, stride = int(rng.integers(2, V)), int(rng.integers(1, 4))
                doc = (start + stride * np.arange(length)) % (V - 2) + 2
                doc[-1] = 1  # EOS
                take = min(length, L - pos)
                targets[r, pos:pos + take] = doc[:take]
                segments[r, pos:pos + take] = seg
                positions[r, pos:pos + take] = np.arange(take)
                pos, seg = pos + take, seg + 1
        inputs = np.zeros_like(targets)
        inputs[:, 1:] = targets[:, :-1]
        inputs[:, 1:] *= segments[:, 1:] == segments[:, :-1]
        return {"decoder_target_tokens": targets, "decoder_input_tokens": inputs,
                "decoder_segment_ids": segments, "decoder_positions": positions,
                "decoder_loss_weights": (targets != 0).astype(np.float32)}

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> dict[str, np.ndarray]:
        if self.delay_s:
            time.sleep(self.delay_s)
        per_host = global_batch_size // process_count
        ids = np.arange(global_batch_size, dtype=np.int64) + step * global_batch_size + 1_000_000
        batch = self._rows(ids[process_index * per_host:(process_index + 1) * per_host])
        if self.nan_at_step is not None and step == self.nan_at_step:
            batch["decoder_loss_weights"][:] = np.nan
        return batch

    def num_eval_batches(self, global_batch_size: int) -> int:
        return -(-self.num_rows // global_batch_size)

    def eval_batches(self, global_batch_size: int, process_index: int = 0, process_count: int = 1):
        per_host = global_batch_size // process_count
        for start in range(0, self.num_rows, global_batch_size):
            lo = start + process_index * per_host
            ids = np.arange(lo, min(lo + per_host, self.num_rows))
            batch = self._rows(ids)
            if len(ids) < per_host:
                batch = {k: np.concatenate([v, np.zeros((per_host - len(ids),) + v.shape[1:], v.dtype)])
                         for k, v in batch.items()}
            yield batch
