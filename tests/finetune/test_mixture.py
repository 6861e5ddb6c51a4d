"""Mixtures: rates honoured within sampling error, batches a pure function of the step, bad rates refused."""
from __future__ import annotations

import numpy as np
import pytest

from case2code_finetune.mixtures import MixtureDataset, make_mixture
from patch_training.errors import UserError


class Rows:
    """A member whose every row says which member and row it is."""

    def __init__(self, tag: int, num_rows: int, length: int = 8):
        self.tag, self.num_rows, self.sequence_length, self.patch_size = tag, num_rows, length, 1
        self.meta = {"task": f"m{tag}"}

    def rows(self, ids):
        ids = np.asarray(ids)
        t = np.repeat(ids[:, None], self.sequence_length, axis=1).astype(np.int32)
        return {"decoder_target_tokens": t, "decoder_segment_ids": np.full_like(t, self.tag),
                "decoder_loss_weights": np.ones(t.shape, np.float32)}


def test_rates_are_honoured_within_sampling_error():
    p = np.array([0.2, 0.5, 0.3])
    mix = MixtureDataset([Rows(1, 37), Rows(2, 1000), Rows(3, 5)], [2, 5, 3], seed=3)  # rates normalise
    steps, batch = 50, 80
    tags = np.concatenate([mix.host_batch(s, batch)["decoder_segment_ids"][:, 0] for s in range(steps)])
    n = steps * batch
    for i, share in enumerate(p):
        got = np.mean(tags == i + 1)
        assert abs(got - share) < 4 * np.sqrt(share * (1 - share) / n), (i, got, share)


def test_batches_are_a_pure_function_of_the_step_and_members_walk_epochs():
    members = [Rows(1, 13), Rows(2, 29)]
    a = MixtureDataset(members, [1, 1], seed=5)
    b = MixtureDataset(members, [1, 1], seed=5)
    for s in (7, 0, 3):  # any order, a fresh instance: the same rows
        np.testing.assert_array_equal(a.host_batch(s, 16)["decoder_target_tokens"],
                                      b.host_batch(s, 16)["decoder_target_tokens"])
    # Two hosts' slices make up the global batch.
    whole = a.host_batch(4, 16)["decoder_target_tokens"]
    halves = [a.host_batch(4, 16, i, 2)["decoder_target_tokens"] for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), whole)
    # Each member walks epochs: after any number of steps, every row was drawn floor or ceil(T/n) times.
    for steps in (3, 20):
        drawn = [[], []]
        for s in range(steps):
            m, rows = a.global_rows(s, 16)
            for k in (0, 1):
                drawn[k].extend(rows[m == k])
        for k, n in ((0, 13), (1, 29)):
            counts = np.bincount(drawn[k], minlength=n)
            assert counts.max() - counts.min() <= 1 and counts.sum() == len(drawn[k])
    assert not np.array_equal(MixtureDataset(members, [1, 1], seed=6).host_batch(0, 16)["decoder_target_tokens"],
                              a.host_batch(0, 16)["decoder_target_tokens"])


@pytest.mark.parametrize("rates", [[1, 0], [1, -0.5], [1, float("nan")], [1, "x"]])
def test_a_rate_that_is_not_positive_is_one_line(rates):
    with pytest.raises(UserError) as e:
        make_mixture(name="m", members=[Rows(1, 3), Rows(2, 3)], rates=rates, member_names=["a", "b"])
    assert "\n" not in str(e.value) and "'b'" in str(e.value)


def test_members_of_different_sequence_lengths_are_refused():
    with pytest.raises(UserError, match="row lengths"):
        MixtureDataset([Rows(1, 3, 8), Rows(2, 3, 16)], [1, 1])


def test_prompt_answer_tasks_register_as_a_seqio_mixture(train_rows, c2c_dir):
    import seqio
    from case2code_finetune import tasks
    from case2code_finetune.mixtures import register_seqio_mixture
    from patch_training.data.vocab import byte_vocabulary

    other = tasks.register_prompt_answer_task(name="second_source", train_files=[str(c2c_dir / "validation.jsonl")])
    name = register_seqio_mixture("c2c_plus", [("case2code", 1.0), (other, 3.0)], byte_vocabulary())
    mixture = seqio.get_mixture_or_task(name)
    rates = {t.name.split("__")[0]: mixture.get_rate(t) for t in mixture.tasks}
    assert rates == {"pa_case2code": 0.25, "pa_second_source": 0.75}
    example = next(mixture.get_dataset(None, split="train", shuffle=False, num_epochs=1).as_numpy_iterator())
    assert example["targets"][-1] == 1 and example["inputs"].size > 0  # answer ends in EOS; prompt has none
    with pytest.raises(UserError, match="must be positive"):
        register_seqio_mixture("bad", [("case2code", 0.0)], byte_vocabulary())
