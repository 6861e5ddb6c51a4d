"""The KV-cache decode path against plain forward passes, and the decoder's sampling contract."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evals.decoding import Decoder
from evals.sampling import SamplingConfig, filter_top_k, filter_top_p
from patch_training.model import ModelConfig, Transformer, init_cache, init_params

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2, rope_theta=20000.0)
PROMPTS = [[5, 6, 7], [9] * 11, list(range(3, 20)), [1, 2]]


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.key(0))


def test_model_cache_steps_equal_full_forward(params):
    model = Transformer(CFG)
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, 61, dtype=jnp.int32)
    full = model.apply({"params": params}, tokens)
    logits, mut = model.apply({"params": params, "cache": init_cache(CFG, 2, 12)}, tokens[:, :4],
                              decode=True, mutable=["cache"])
    pieces = [logits]
    for i in range(4, 10):
        step, mut = model.apply({"params": params, "cache": mut["cache"]}, tokens[:, i:i + 1],
                                decode=True, mutable=["cache"])
        pieces.append(step)
    assert int(mut["cache"]["cache_index"]) == 10
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5)


def test_batched_left_padded_decoding_equals_full_forward(params):
    # fp32 compute: the cached path must equal the full forward pass within fp32 rounding.
    decoder = Decoder(CFG, params, batch_size=4, compute_dtype="float32")
    results = decoder.generate(PROMPTS, max_new_tokens=6, return_probs=True, stop_tokens=[])
    model = Transformer(CFG)
    for prompt, (sample,) in zip(PROMPTS, results, strict=True):
        assert len(sample.token_ids) == 6 and sample.probs.shape == (6, 61)
        logits = model.apply({"params": params}, jnp.asarray([prompt + sample.token_ids]))[0]
        logits = logits[len(prompt) - 1:-1]
        np.testing.assert_allclose(sample.probs, jax.nn.softmax(logits), atol=1e-6)
        np.testing.assert_allclose(sample.logprobs,
                                   jax.nn.log_softmax(logits)[np.arange(6), sample.token_ids], atol=1e-5)
        assert sample.token_ids == [int(t) for t in jnp.argmax(logits, axis=-1)]  # greedy
    # Batching does not change a row's result.
    alone = Decoder(CFG, params, batch_size=1, compute_dtype="float32").generate([PROMPTS[2]], max_new_tokens=6, stop_tokens=[])
    assert alone[0][0].token_ids == results[2][0].token_ids


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
