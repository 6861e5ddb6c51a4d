"""A synthetic token stream for two-stage tests: rows are slices of one deterministic stream.

Token row r holds stream positions [r·L, (r+1)·L); a patch row of K·T tokens is therefore exactly
K consecutive token rows, as with the real concat caches. The stream is a learnable pattern
(runs of arithmetic sequences ending in EOS=1) so losses fall within a few steps.
"""
from __future__ import annotations

import numpy as np

from patch_training.model import ModelConfig

VOCAB = 64


def stream_tokens(start: int, length: int, seed: int = 0) -> np.ndarray:
    pos = np.arange(start, start + length, dtype=np.int64)
    doc, offset = np.divmod(pos, 24)
    stride = (doc * 7 + seed) % 3 + 1
    first = (doc * 13 + seed) % (VOCAB - 2)
    tokens = (first + stride * offset) % (VOCAB - 2) + 2
    return np.where(offset == 23, 1, tokens).astype(np.int32)


class StreamRows:
    """`RowSource` over the synthetic stream with rows of `length` tokens (patch rows when K > 1)."""

    def __init__(self, length: int, patch_size: int, num_rows: int, seed: int = 0):
        self.length, self.patch_size, self.num_rows, self.seed = length, patch_size, num_rows, seed
        self.requested: list[np.ndarray] = []

    def rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        self.requested.append(ids.copy())
        targets = np.stack([stream_tokens(int(r) * self.length, self.length, self.seed) for r in ids])
        if self.patch_size > 1:
            inputs = targets.copy()
        else:
            inputs = np.zeros_like(targets)
            inputs[:, 1:] = targets[:, :-1]
        n = len(ids)
        return {"decoder_target_tokens": targets, "decoder_input_tokens": inputs,
                "decoder_segment_ids": np.ones_like(targets),
                "decoder_positions": np.broadcast_to(np.arange(self.length, dtype=np.int32), (n, self.length)).copy(),
                "decoder_loss_weights": np.ones(targets.shape, np.float32)}


class EvalRows:
    """A validation set: `num_rows` token rows of another stream, one in-order pass."""

    def __init__(self, length: int, num_rows: int, seed: int):
        self.rows_src = StreamRows(length, 1, num_rows, seed)
        self.num_rows = num_rows

    def num_eval_batches(self, batch_size: int) -> int:
        return -(-self.num_rows // batch_size)

    def eval_batches(self, batch_size: int, process_index: int = 0, process_count: int = 1):
        for start in range(0, self.num_rows, batch_size):
            ids = np.arange(start, start + batch_size) % self.num_rows
            yield self.rows_src.rows(ids)


def micro_model() -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                       num_kv_heads=1, max_seq_len=64, scan_layers=False)
