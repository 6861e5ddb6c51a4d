"""Packing: rows sharing a packed sequence do not attend across their boundary."""
from __future__ import annotations

import numpy as np


def _packed_row(train_rows):
    batch = train_rows.rows(np.arange(train_rows.num_rows))
    for r in range(train_rows.num_rows):
        if batch["decoder_segment_ids"][r].max() >= 2:
            return {k: v[r:r + 1] for k, v in batch.items()}
    raise AssertionError("no row holds two examples")


def test_positions_and_inputs_restart_at_each_example(train_rows):
    row = _packed_row(train_rows)
    seg, pos, inp = row["decoder_segment_ids"][0], row["decoder_positions"][0], row["decoder_input_tokens"][0]
    starts = np.nonzero((seg > 0) & (np.r_[0, seg[:-1]] != seg))[0]
    assert len(starts) >= 2
    assert np.all(pos[starts] == 0) and np.all(inp[starts] == 0)


def test_second_example_does_not_see_the_first(train_rows, tiny_params, tiny_config):
    from patch_training.model import Transformer

    import jax
    model = Transformer(tiny_config)
    row = _packed_row(train_rows)
    seg = row["decoder_segment_ids"]
    apply = jax.jit(lambda tokens, positions, segments: model.apply(
        {"params": tiny_params}, tokens, positions=positions, segment_ids=segments))

    def logits(r):
        return np.asarray(apply(r["decoder_input_tokens"], r["decoder_positions"], r["decoder_segment_ids"]))

    base = logits(row)
    first = seg == 1
    scrambled = dict(row)
    rng = np.random.default_rng(1)
    scrambled["decoder_input_tokens"] = np.where(first, rng.integers(3, 259, seg.shape),
                                                 row["decoder_input_tokens"]).astype(np.int32)
    other = logits(scrambled)
    later = seg[0] >= 2
    assert not np.allclose(base[0][first[0]], other[0][first[0]])      # the change is visible where it should be
    np.testing.assert_allclose(base[0][later], other[0][later], rtol=0, atol=1e-5)

    # The second example alone at the start of a row gives the same logits.
    pos2 = np.nonzero(seg[0] == 2)[0]
    alone = {k: np.zeros_like(v) for k, v in row.items()}
    for k in ("decoder_input_tokens", "decoder_positions"):
        alone[k][0, :len(pos2)] = row[k][0, pos2]
    alone["decoder_segment_ids"][0, :len(pos2)] = 1
    np.testing.assert_allclose(logits(alone)[0, :len(pos2)], base[0, pos2], rtol=0, atol=1e-4)
