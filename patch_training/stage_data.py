"""Training data for a two-stage (patch then token) run: one token stream, split without overlap.

Both stages read the *same* concatenated token stream of the corpus (documents joined with their
EOS separators). The stream is cut into blocks of L1 = K·T tokens: a block is exactly one
patch-stage row, and exactly R = L1 / T consecutive token-stage rows. Blocks are visited in an
epoch-wise permutation derived from the seed. Stage 1 consumes blocks from the front of that walk
(B1 blocks per step); stage 2 starts right after the last block stage 1 consumed and reads each
following block as R token rows (B2 rows per step). So, within the first epoch, stage 2 never sees
text that stage 1 trained on, and both stages are pure functions of their step (exact resume).

A `RowSource` is anything with `num_rows` and `rows(ids) -> batch dict`; `dataset_rows` adapts the
data package's `StepIndexedDataset` (built with `concat=True` for token rows, `patch_size=K` for
patch rows, same corpus, vocabulary and `max_tokens`, so their streams coincide).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from patch_training.data.walk import EpochWalk, host_slice, step_positions
from patch_training.errors import UserError

Batch = dict[str, np.ndarray]


class RowSource(Protocol):
    num_rows: int

    def rows(self, ids: np.ndarray) -> Batch: ...


def dataset_rows(dataset: Any) -> RowSource:
    """A step dataset as a row source (`StepIndexedDataset.rows` is the public row API)."""
    if not callable(getattr(dataset, "rows", None)):
        raise TypeError(f"{type(dataset).__name__} has no rows(ids) method")
    return dataset


class BlockWalk(EpochWalk):
    """Walk position -> block id over `num_blocks` blocks (the walk both stages share)."""

    def __init__(self, num_blocks: int, seed: int):
        if num_blocks <= 0:
            raise UserError("the training corpus is shorter than one patch-stage row (K*T tokens)")
        # A distinct stream from the data package's own row shuffles (which use [seed, epoch]).
        super().__init__(num_blocks, (int(seed), 0x5747))
        self.num_blocks, self.seed = int(num_blocks), int(seed)

    def block_ids(self, positions: np.ndarray) -> np.ndarray:
        return self.item_ids(positions)


class PatchStageData:
    """Stage 1: step s reads the patch rows of blocks at walk positions [s·B1, (s+1)·B1)."""

    def __init__(self, patch_rows: RowSource, walk: BlockWalk):
        self.source, self.walk = patch_rows, walk
        self.prefetch_depth = int(getattr(patch_rows, "prefetch_depth", 0) or 0)  # read ahead as the source asks

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> Batch:
        positions = step_positions(step, global_batch_size)[host_slice(global_batch_size, process_index,
                                                                      process_count)]
        ids = self.walk.block_ids(positions)
        return self.source.rows(ids)


class TokenStageData:
    """Stage 2: token rows of the blocks after the first `skip_blocks` of the walk.

    Token position p (counted from stage 2's start) is row p mod R of block walk position
    skip_blocks + p div R, i.e. token row id block_id·R + (p mod R).
    """

    def __init__(self, token_rows: RowSource, walk: BlockWalk, rows_per_block: int, skip_blocks: int):
        self.source, self.walk = token_rows, walk
        self.prefetch_depth = int(getattr(token_rows, "prefetch_depth", 0) or 0)
        self.rows_per_block = int(rows_per_block)
        self.skip_blocks = int(skip_blocks)

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> Batch:
        p = step_positions(step, global_batch_size)[host_slice(global_batch_size, process_index, process_count)]
        blocks = self.walk.block_ids(self.skip_blocks + p // self.rows_per_block)
        return self.source.rows(blocks * self.rows_per_block + p % self.rows_per_block)


def count_blocks(patch_rows: RowSource | None, token_rows: RowSource | None, rows_per_block: int) -> int:
    """Blocks both stages can address (the token stream may end with a partial block)."""
    counts = []
    if patch_rows is not None:
        counts.append(patch_rows.num_rows)
    if token_rows is not None:
        counts.append(token_rows.num_rows // rows_per_block)
    if not counts:
        raise ValueError("need patch rows, token rows, or both")
    return min(counts)


def check_same_stream(patch_rows: RowSource, token_rows: RowSource, rows_per_block: int) -> None:
    """Refuse caches cut from different streams: patch row 0 must equal token rows 0..R-1 joined."""
    patch = patch_rows.rows(np.array([0]))["decoder_target_tokens"][0]
    tokens = token_rows.rows(np.arange(rows_per_block))["decoder_target_tokens"].reshape(-1)
    if patch.shape != tokens.shape or not np.array_equal(patch, tokens):
        raise UserError("patch-stage and token-stage rows come from different token streams "
                        "(build both from the same corpus, vocabulary and max_tokens, token rows with concat=True)")
