"""The prompt mask: only answer tokens (and the answer's EOS) carry loss."""
from __future__ import annotations

import numpy as np

from tests.finetune.conftest import SEQ_LEN


def _segments(batch: dict, r: int):
    seg = batch["decoder_segment_ids"][r]
    for s in np.unique(seg[seg > 0]):
        yield np.nonzero(seg == s)[0]


def _decode(tokens: np.ndarray) -> str:
    return bytes(int(t) - 3 for t in tokens if t >= 3).decode()


def test_every_segment_is_prompt_then_answer_with_weight_on_the_answer_only(train_rows, good_train_rows):
    by_prompt = {r["prompt"]: r["output"] for r in good_train_rows}
    batch = train_rows.rows(np.arange(train_rows.num_rows))
    seen = 0
    for r in range(train_rows.num_rows):
        for pos in _segments(batch, r):
            targets, weights = batch["decoder_target_tokens"][r, pos], batch["decoder_loss_weights"][r, pos]
            n_answer = int(weights.sum())
            assert np.all(weights[:-n_answer] == 0) and np.all(weights[-n_answer:] == 1)  # prompt, then answer
            prompt, answer = _decode(targets[:-n_answer]), targets[-n_answer:]
            assert answer[-1] == 1  # the answer ends in EOS, which is trained
            assert _decode(answer) == by_prompt[prompt]
            seen += 1
    assert seen == len(good_train_rows)  # every good row is there once; the long one was skipped


def test_loss_tokens_in_a_batch_equal_the_sum_of_its_answer_lengths(train_rows, good_train_rows):
    answer_len = {r["prompt"]: len(r["output"].encode()) + 1 for r in good_train_rows}  # + EOS
    for step in range(3):
        batch = train_rows.host_batch(step, 4)
        expected = 0
        for r in range(4):
            for pos in _segments(batch, r):
                n = int(batch["decoder_loss_weights"][r, pos].sum())
                expected += answer_len[_decode(batch["decoder_target_tokens"][r, pos][:-n])]
        assert expected > 0 and batch["decoder_loss_weights"].sum() == expected   # (a batch of no answers proves nothing)


def test_changing_prompt_labels_keeps_the_loss_changing_an_answer_label_changes_it(train_rows, tiny_params,
                                                                                    tiny_config):
    from patch_training.model import Transformer
    from patch_training.train_step import loss_and_stats

    import jax
    model = Transformer(tiny_config)
    loss_fn = jax.jit(lambda params, b: loss_and_stats(params, b, model, 1))
    batch = train_rows.host_batch(0, 4)
    loss, stats = loss_fn(tiny_params, batch)
    weights = batch["decoder_loss_weights"]
    assert float(stats["weight_sum"]) == weights.sum() > 0

    prompt = (weights == 0) & (batch["decoder_segment_ids"] > 0)
    assert prompt.sum() > 0
    rng = np.random.default_rng(0)
    changed = dict(batch)
    changed["decoder_target_tokens"] = np.where(prompt, rng.integers(3, 259, weights.shape),
                                                batch["decoder_target_tokens"]).astype(np.int32)
    assert np.any(changed["decoder_target_tokens"] != batch["decoder_target_tokens"])
    loss2, stats2 = loss_fn(tiny_params, changed)
    assert float(loss2) == float(loss) and float(stats2["weight_sum"]) == float(stats["weight_sum"])

    r, c = map(int, np.argwhere(weights == 1)[0])
    answer_changed = dict(batch)
    answer_changed["decoder_target_tokens"] = batch["decoder_target_tokens"].copy()
    answer_changed["decoder_target_tokens"][r, c] = 3 + (int(batch["decoder_target_tokens"][r, c]) + 50) % 250
    loss3, _ = loss_fn(tiny_params, answer_changed)
    assert float(loss3) != float(loss)


def test_rows_have_the_configured_length_and_report_packing(train_rows):
    assert train_rows.sequence_length == SEQ_LEN
    meta = train_rows.meta
    assert 0 < meta["packing_efficiency"] <= 1
    seg = train_rows.rows(np.arange(train_rows.num_rows))["decoder_segment_ids"]
    assert np.count_nonzero(seg) == meta["num_tokens"]
    assert abs(meta["packing_efficiency"] - np.count_nonzero(seg) / seg.size) < 1e-9
