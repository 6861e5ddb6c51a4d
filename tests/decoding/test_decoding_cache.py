"""The model's decode mode (`model_decode`: prefill, cached steps, full-sequence scoring) against the training
forward, and the decoder's sampling contract."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evals.decoding import Decoder
from evals.sampling import SamplingConfig, filter_top_k, filter_top_p
from patch_training import model_decode
from patch_training.model import ModelConfig, Transformer, init_params

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2, rope_theta=20000.0)
PROMPTS = [[5, 6, 7], [9] * 11, list(range(3, 20)), [1, 2]]


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.key(0))


@pytest.mark.parametrize("scan", [True, False])
def test_decode_mode_equals_training_forward_fp32(scan):
    """Scanned + untied and unscanned + tied checkpoints (GQA: 4 heads over 2 kv heads): the decode mode's
    prefill, cached steps and full-sequence scoring give the Linen forward's logits within fp32 rounding."""
    cfg = dataclasses.replace(CFG, scan_layers=scan, tie_embeddings=not scan)
    params = init_params(cfg, jax.random.key(1))
    tokens = jax.random.randint(jax.random.key(2), (3, 12), 0, 61, dtype=jnp.int32)
    full = Transformer(cfg).apply({"params": params}, tokens)
    weights = model_decode.decode_weights(params, cfg, "float32")
    np.testing.assert_allclose(model_decode.score_logits(weights, tokens, cfg, jnp.float32, jnp.float32), full,
                               atol=1e-5, rtol=1e-5)
    # Prefill the first 5 tokens (right-padded to 8), then one step at a time into a 16-slot cache.
    padded = jnp.pad(tokens[:, :5], ((0, 0), (0, 3)))
    kv, logits = model_decode.prefill(weights, padded, jnp.full((3,), 5), cfg, jnp.float32, jnp.float32)
    np.testing.assert_allclose(logits, full[:, 4], atol=1e-5, rtol=1e-5)
    cache = [(jnp.zeros((3, 2, 16, 8)).at[:, :, :8].set(k), jnp.zeros((3, 2, 16, 8)).at[:, :, :8].set(v))
             for k, v in kv]
    for i in range(5, 12):
        cache, logits = model_decode.step(weights, cache, tokens[:, i], jnp.full((3,), i), cfg, jnp.float32)
        np.testing.assert_allclose(logits, full[:, i], atol=1e-5, rtol=1e-5)


def test_stop_tokens_and_max_new_tokens(params):
    decoder = Decoder(CFG, params, batch_size=4)
    free = decoder.generate(PROMPTS[:2], max_new_tokens=8, stop_tokens=[])
    stop = free[0][0].token_ids[3]
    first = free[0][0].token_ids.index(stop)
    stopped = decoder.generate(PROMPTS[:2], max_new_tokens=8, stop_tokens=[stop])
    assert stopped[0][0].token_ids == free[0][0].token_ids[:first]
    assert stopped[0][0].finish_reason == "stop" and len(stopped[0][0].logprobs) == first
    assert free[0][0].finish_reason == "length" and len(free[0][0].token_ids) == 8


def test_seeded_sampling_is_reproducible_and_varied(params):
    decoder = Decoder(CFG, params, batch_size=8)
    sampling = SamplingConfig(temperature=1.0, top_k=30, top_p=0.95)
    a = decoder.generate(PROMPTS[:2], max_new_tokens=8, sampling=sampling, num_samples=3, seed=7, stop_tokens=[])
    b = Decoder(CFG, params, batch_size=2).generate(PROMPTS[:2], max_new_tokens=8, sampling=sampling,
                                                    num_samples=3, seed=7, stop_tokens=[])
    c = decoder.generate(PROMPTS[:2], max_new_tokens=8, sampling=sampling, num_samples=3, seed=8, stop_tokens=[])
    ids = lambda r: [[s.token_ids for s in row] for row in r]
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert len({tuple(s) for s in ids(a)[0]}) > 1  # n samples differ from each other


def test_filters():
    logits = jnp.array([[3.0, 1.0, 2.0, 0.0]])
    assert (np.asarray(filter_top_k(logits, 2)) > -1e29).tolist() == [[True, False, True, False]]
    probs = np.asarray(jax.nn.softmax(logits))[0]  # ~[.64, .09, .24, .03]
    assert (np.asarray(filter_top_p(logits, 0.5)) > -1e29).tolist() == [[True, False, False, False]]
    assert (np.asarray(filter_top_p(logits, probs[0] + 0.01)) > -1e29).tolist() == [[True, False, True, False]]
    # Greedy ignores filters; a near-zero temperature with top_k=1 also picks the argmax.
    key = jax.random.split(jax.random.key(0), 1)
    from evals.sampling import sample_tokens
    assert int(sample_tokens(logits, key, SamplingConfig(temperature=1.0, top_k=1))[0]) == 0
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)


def test_bad_prompts_are_refused(params):
    decoder = Decoder(CFG, params)
    with pytest.raises(ValueError, match="empty"):
        decoder.generate([[]], max_new_tokens=2)
    with pytest.raises(ValueError, match="outside"):
        decoder.generate([[1, 99]], max_new_tokens=2)
