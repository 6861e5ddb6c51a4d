"""Shared prefill (the samples of one prompt prefill it once) and the on-device running mean of the
full-vocabulary distribution, against the unshared engine and the scoring pass."""
import jax
import numpy as np
import pytest

from evals.backends.jax_backend import JaxModel
from evals.backends.text_vocab import byte_text_vocab
from evals.decoding import Decoder
from evals.sampling import SamplingConfig
from patch_training.model import ModelConfig, init_params

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2, rope_theta=20000.0)
PROMPTS = [[5, 6, 7], list(range(3, 20)), [4] * 30]
SAMPLING = SamplingConfig(temperature=1.0, top_k=40, top_p=0.95)


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.key(0))


def _generate(params, share: bool, batch_size: int, **kw):
    decoder = Decoder(CFG, params, batch_size=batch_size, compute_dtype="float32", share_prefill=share)
    out = decoder.generate(PROMPTS, max_new_tokens=[4, 9, 6], sampling=SAMPLING, num_samples=5, seed=3,
                           stop_tokens=[7, 8], **kw)
    return out, decoder.last_stats


def test_shared_prefill_equals_separate_prefills(params):
    """5 samples per prompt on 4 rows: some samples wait and start later from a sibling's cache."""
    separate, sep_stats = _generate(params, share=False, batch_size=4)
    shared, stats = _generate(params, share=True, batch_size=4)
    tokens = lambda r: [[(s.token_ids, s.finish_reason) for s in row] for row in r]
    assert tokens(shared) == tokens(separate)
    np.testing.assert_allclose([lp for row in shared for s in row for lp in s.logprobs],
                               [lp for row in separate for s in row for lp in s.logprobs], atol=1e-5)
    assert sep_stats["prefills"] == 15 and sep_stats["copies"] == 0
    # Every prompt is prefilled at most once per placement; waiting samples copy a held prompt.
    assert stats["prefills"] == 3 and stats["copies"] >= 3
    assert any(s.finish_reason == "stop" for row in shared for s in row)


def test_one_prefill_per_distinct_prompt_when_rows_suffice(params):
    decoder = Decoder(CFG, params, batch_size=32, compute_dtype="float32")
    twice = PROMPTS + [PROMPTS[0]]           # an identical prompt under another index shares too
    out = decoder.generate(twice, max_new_tokens=5, sampling=SAMPLING, num_samples=4, seed=1,
                           stop_tokens=[])
    assert decoder.last_stats == {"prefills": 3, "copies": 0, "chunks": 1}
    # Same tokens as that prompt alone under its own index and seed (keys do not follow the cache).
    alone = Decoder(CFG, params, batch_size=4, compute_dtype="float32").generate(
        [PROMPTS[0]], max_new_tokens=5, sampling=SAMPLING, num_samples=4, seeds=[1], stop_tokens=[])
    seeded = decoder.generate(PROMPTS, max_new_tokens=5, sampling=SAMPLING, num_samples=4,
                              seeds=[1, 2, 3], stop_tokens=[])
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in seeded[0]]
    assert [s.token_ids for s in out[0]] != [s.token_ids for s in out[3]]   # other keys, same cache


def test_running_mean_equals_scoring_pass_and_per_step_average(params):
    shared, _ = _generate(params, share=True, batch_size=4, return_mean_dist=True, return_probs=True)
    scorer = JaxModel(CFG, params, byte_text_vocab(), batch_size=4, fingerprint="test")
    samples = [(p, s) for p, row in zip(PROMPTS, shared, strict=True) for s in row]
    with_tokens = [(p, s) for p, s in samples if s.token_ids]
    ref = scorer.mean_dists([p for p, _ in with_tokens], [s.token_ids for _, s in with_tokens])
    for (_, s), r in zip(with_tokens, ref, strict=True):
        assert s.mean_dist.shape == (CFG.vocab_size,) and s.mean_dist.dtype == np.float32
        np.testing.assert_allclose(s.mean_dist, r, atol=1e-5)
        np.testing.assert_allclose(s.mean_dist, s.probs.mean(axis=0), atol=1e-6)
        assert s.mean_dist.sum() == pytest.approx(1.0, abs=1e-5)
    # A sample that stopped at once has no generated step and so no distribution.
    assert all(s.mean_dist is None for _, s in samples if not s.token_ids)
    stopped_early = [s for _, s in with_tokens if s.finish_reason == "stop"]
    assert stopped_early   # the mask over kept steps is exercised
