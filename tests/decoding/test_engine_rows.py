"""The engine held open (`decode_engine.Engine`): per-row sampling settings, rows that join late, cancellation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evals.decode_engine import Engine, EngineSpec, Row
from evals.sampling import SamplingConfig, sample_tokens, sample_tokens_per_row
from patch_training import model_decode
from patch_training.model import ModelConfig, init_params

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2, max_seq_len=128)
SETTINGS = [SamplingConfig(), SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=5),
            SamplingConfig(temperature=1.3, top_p=0.8), SamplingConfig(temperature=0.9, top_k=7, top_p=0.6)]
PROMPTS = [[5, 6, 7], [9] * 11, list(range(3, 20)), [2, 4], [8] * 6]


@pytest.fixture(scope="module")
def weights():
    return model_decode.decode_weights(init_params(CFG, jax.random.key(0)), CFG, "float32")


def spec(sampling, stop=(3,)):
    return EngineSpec(config=CFG, sampling=sampling, rows=4, cache_len=128, max_new_tokens=64, stop_tokens=stop,
                      return_probs=False, compute_dtype="float32", cache_dtype="float32")


def key(i):
    return jax.random.fold_in(jax.random.key(11), i)


def alone(weights, i, limit=12):
    """Row i decoded with nothing else in the batch."""
    engine = Engine(weights, spec(None), chunk_steps=4)
    row = Row(prompt=PROMPTS[i], key=key(i), limit=limit, sampling=SETTINGS[i])
    engine.submit(row)
    while engine.busy:
        engine.step()
    return row.result.token_ids, row.result.logprobs


def test_per_row_sampling_is_the_compiled_sampling_bit_for_bit():
    per_row, compiled = jax.jit(sample_tokens_per_row), jax.jit(sample_tokens, static_argnums=2)
    logits = jax.random.normal(jax.random.key(1), (len(SETTINGS), 61)) * 3
    keys = jax.random.split(jax.random.key(2), len(SETTINGS))
    mixed = per_row(logits, keys, *(jnp.asarray([getattr(s, f) for s in SETTINGS])
                                                  for f in ("temperature", "top_k", "top_p")))
    for i, s in enumerate(SETTINGS):
        want = compiled(logits, keys, s)                        # every row under setting i
        assert int(mixed[i]) == int(want[i]), s
        same = per_row(logits, keys, *(jnp.full((len(SETTINGS),), getattr(s, f))
                                                     for f in ("temperature", "top_k", "top_p")))
        assert same.tolist() == want.tolist(), s


def test_rows_with_their_own_settings_decode_as_they_would_alone(weights):
    engine = Engine(weights, spec(None), chunk_steps=4)
    rows = [Row(prompt=p, key=key(i), limit=12, sampling=s) for i, (p, s) in enumerate(zip(PROMPTS, SETTINGS))]
    for row in rows[:2]:
        engine.submit(row)
    engine.step()                      # two rows are decoding when the others arrive
    for row in rows[2:]:
        engine.submit(row)
    while engine.busy:
        engine.step()
    for i, row in enumerate(rows):
        tokens, logprobs = alone(weights, i)
        assert row.done and row.result.token_ids == tokens, i
        np.testing.assert_allclose(row.result.logprobs, logprobs, atol=1e-6)
    assert len({tuple(r.result.token_ids) for r in rows[1:]}) == 4   # the settings did differ


def test_cancelled_rows_leave_and_the_rest_are_untouched(weights):
    engine = Engine(weights, spec(None, stop=()), chunk_steps=4)
    seen = []
    long = Row(prompt=PROMPTS[0], key=key(0), limit=60, sampling=SETTINGS[0], watch=lambda r: seen.append(len(r.token_ids)))
    waiting = [Row(prompt=PROMPTS[1], key=key(1), limit=60, sampling=SETTINGS[1]) for _ in range(4)]
    keep = Row(prompt=PROMPTS[3], key=key(3), limit=12, sampling=SETTINGS[3])
    for row in [long, *waiting, keep]:
        engine.submit(row)
    engine.step()
    assert engine.live == 4 and engine.waiting == 2 and seen == [4]   # watched after each chunk
    engine.cancel(long)
    engine.cancel(waiting[-1])         # still waiting: it never starts
    engine.step()
    assert long.done and long.result is None and waiting[-1].done and engine.stats["cancelled"] == 2
    assert engine.occupant.count(long) == 0 and keep in engine.occupant   # its freed row went to the next
    while engine.busy:
        engine.step()
    assert keep.result.token_ids == alone(weights, 3)[0]
    assert seen == [4]                 # a cancelled row is not reported again


def test_ignoring_eos_per_row(weights):
    engine = Engine(weights, spec(None, stop=tuple(range(61))), chunk_steps=4)   # every token is a stop token
    stops, ignores = (Row(prompt=PROMPTS[0], key=key(0), limit=5, stop_on_eos=flag) for flag in (True, False))
    engine.submit(stops)
    engine.submit(ignores)
    while engine.busy:
        engine.step()
    assert stops.result.token_ids == [] and stops.result.stopped
    assert len(ignores.result.token_ids) == 5 and not ignores.result.stopped
