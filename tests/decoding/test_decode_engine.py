"""The continuous-batching engine against the training forward: greedy continuations re-scored by
`Transformer.apply` (fp32), samples independent of batching, bf16 compute."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evals.decoding import Decoder
from evals.sampling import SamplingConfig
from patch_training.model import ModelConfig, Transformer, init_params

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2, rope_theta=20000.0)
PROMPTS = [[5, 6, 7], [9] * 11, list(range(3, 20)), [1, 2], [4] * 30]


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.key(0))


@pytest.mark.parametrize("scan", [True, False])
def test_engine_fp32_equals_training_forward(scan, params):
    """Greedy continuations, re-scored teacher-forced by the Linen forward: the engine's per-step distributions
    and log-probs equal it within fp32 rounding, and each token is its argmax. Scanned + untied and unscanned
    + tied checkpoints, GQA; 5 prompts on 2 rows, so rows are refilled."""
    cfg = CFG if scan else dataclasses.replace(CFG, scan_layers=False, tie_embeddings=True)
    params = params if scan else init_params(cfg, jax.random.key(1))
    got = Decoder(cfg, params, batch_size=2, compute_dtype="float32").generate(
        PROMPTS, max_new_tokens=6, return_probs=True, stop_tokens=[])
    model = Transformer(cfg)
    for prompt, (sample,) in zip(PROMPTS, got, strict=True):
        logits = model.apply({"params": params}, jnp.asarray([prompt + sample.token_ids]))[0]
        logits = logits[len(prompt) - 1:-1]
        assert sample.token_ids == [int(t) for t in jnp.argmax(logits, axis=-1)]   # greedy
        np.testing.assert_allclose(sample.probs, jax.nn.softmax(logits), atol=1e-6)
        np.testing.assert_allclose(sample.logprobs,
                                   jax.nn.log_softmax(logits)[np.arange(6), sample.token_ids], atol=1e-5)


def test_sampled_outputs_do_not_depend_on_batching(params):
    """Same seed: identical samples whatever the row count or the per-prompt limits around them."""
    sampling = SamplingConfig(temperature=1.0, top_k=40, top_p=0.95)
    kw = dict(sampling=sampling, num_samples=3, seed=11, stop_tokens=[7, 8])
    limits = [3, 12, 5, 9, 1]
    runs = [Decoder(CFG, params, batch_size=b, compute_dtype="float32").generate(
        PROMPTS, max_new_tokens=limits, **kw) for b in (1, 2, 8)]
    ids = lambda r: [[(s.token_ids, s.finish_reason) for s in row] for row in r]
    assert ids(runs[0]) == ids(runs[1]) == ids(runs[2])
    for (i, row) in enumerate(runs[2]):
        for s in row:
            assert len(s.token_ids) <= limits[i]
            assert s.finish_reason == ("stop" if len(s.token_ids) < limits[i] else "length")
            assert not set(s.token_ids) & {7, 8}
    assert any(s.finish_reason == "stop" for row in runs[2] for s in row)
    np.testing.assert_allclose([lp for row in runs[1] for s in row for lp in s.logprobs],
                               [lp for row in runs[0] for s in row for lp in s.logprobs], atol=1e-5)


def test_bf16_engine_tracks_fp32(params):
    """bf16 compute (fp32 params and cache): distributions within bf16 rounding of fp32."""
    kw = dict(max_new_tokens=8, return_probs=True, stop_tokens=[])
    fp32 = Decoder(CFG, params, batch_size=8, compute_dtype="float32").generate(PROMPTS, **kw)
    bf16 = Decoder(CFG, params, batch_size=8, compute_dtype="bfloat16").generate(PROMPTS, **kw)
    for _, (a,), (b,) in zip(PROMPTS, fp32, bf16, strict=True):
        n = next((k for k, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y), 8)
        assert n >= 1  # the first token comes from the same prompt: must agree unless a near-tie
        np.testing.assert_allclose(a.probs[:n], b.probs[:n], atol=2e-2)


def test_engine_refuses_bad_options(params):
    with pytest.raises(ValueError, match="compute_dtype"):
        Decoder(CFG, params, compute_dtype="float16")
    with pytest.raises(ValueError, match="cache_dtype"):
        Decoder(CFG, params, cache_dtype="float16")
    with pytest.raises(ValueError, match="max_new_tokens"):
        Decoder(CFG, params).generate(PROMPTS, max_new_tokens=[1, 2])
