"""The in-process backend's DynamicQA sampling path: all prompts in one engine run with shared
prefills, stop strings of one token stopped in the loop, and the mean distribution from the engine's
running sum equal to the teacher-forced scoring pass (fp32)."""
import jax
import numpy as np
import pytest

from evals.backends.jax_backend import JaxModel
from evals.backends.text_vocab import byte_text_vocab
from evals.model_api import Sampling
from patch_training.model import ModelConfig, init_params

# 131 ids = the byte vocabulary's 3 specials and the ASCII bytes: every completion decodes char for token.
CFG = ModelConfig(vocab_size=131, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2)
PROMPTS = ["Q: capital of France?\nA:", "Who wrote Hamlet?", "x"]


@pytest.fixture(scope="module")
def model():
    return JaxModel(CFG, init_params(CFG, jax.random.key(4)), byte_text_vocab(), batch_size=8,
                    fingerprint="dqa-engine-test")


def _check_means(model, prompts, rows):
    pairs = [(model.prompt_ids(p, False), c) for p, row in zip(prompts, rows) for c in row if c.token_ids]
    ref = model.mean_dists([p for p, _ in pairs], [c.token_ids for _, c in pairs])
    for (_, c), r in zip(pairs, ref, strict=True):
        np.testing.assert_allclose(c.mean_dist, r, atol=1e-5)
        assert c.mean_dist.sum() == pytest.approx(1.0, abs=1e-5)
    return len(pairs)


def test_one_token_stop_strings_stop_in_the_loop_with_the_same_completions(model):
    free = model.generate(PROMPTS, 3, Sampling(max_new_tokens=12, temperature=0.5, seed=1))
    text = free[0][0].text
    assert len(text) >= 5
    stop = text[3]                                  # a character the first sample writes at index 3
    assert model.stop_string_tokens((stop, "ab")) == (ord(stop) + 3,)
    sampling = Sampling(max_new_tokens=12, temperature=0.5, seed=1, stop=(stop,), return_dist=True)
    got = model.generate(PROMPTS, 3, sampling)
    for before, row in zip(free, got, strict=True):
        for b, c in zip(before, row, strict=True):
            # Same as cutting the free-running sample at its first stop character.
            cut = b.text.find(stop)
            assert c.text == (b.text if cut < 0 else b.text[:cut])
            assert c.token_ids == b.token_ids[:len(c.token_ids)]
            assert c.finish_reason == ("stop" if cut >= 0 else b.finish_reason)
    assert got[0][0].text == text[:3] and text.find(stop) == 3
    assert _check_means(model, PROMPTS, got) >= 6
    # A prompt's samples do not depend on which prompts share the call.
    alone = model.generate(PROMPTS[1:2], 3, sampling)[0]
    assert [c.token_ids for c in alone] == [c.token_ids for c in got[1]]
    # One prefill per distinct prompt: 9 samples on 8 rows.
    assert model.decoder.last_stats["prefills"] <= len(PROMPTS)


def test_stop_string_cut_on_the_host_rescores_the_mean(model):
    free = model.generate(PROMPTS, 2, Sampling(max_new_tokens=12, temperature=0.5, seed=2))
    stop = free[1][0].text[2:4]                     # two tokens: only the host can find it
    assert len(stop) == 2 and model.stop_string_tokens((stop,)) == ()
    got = model.generate(PROMPTS, 2, Sampling(max_new_tokens=12, temperature=0.5, seed=2, stop=(stop,),
                                              return_dist=True))
    assert got[1][0].text == free[1][0].text[:2] and len(got[1][0].token_ids) == 2
    assert _check_means(model, PROMPTS, got) >= 4


def test_p_s_over_every_step_includes_the_stop_step(model):
    """The official p_s: the mean softmax over every generated step, the one that sampled the stop included.
    Reference: the teacher-forced scoring pass over the kept tokens plus the stop token."""
    free = model.generate(PROMPTS, 3, Sampling(max_new_tokens=12, temperature=0.5, seed=1))
    stop = free[0][0].text[3]
    stop_id = ord(stop) + 3
    kept_only = model.generate(PROMPTS, 3, Sampling(max_new_tokens=12, temperature=0.5, seed=1, stop=(stop,),
                                                    return_dist=True))
    every = model.generate(PROMPTS, 3, Sampling(max_new_tokens=12, temperature=0.5, seed=1, stop=(stop,),
                                                return_dist=True, dist_includes_stop=True))
    stopped = 0
    for p, row_k, row_e in zip(PROMPTS, kept_only, every, strict=True):
        for k, e in zip(row_k, row_e, strict=True):
            assert e.token_ids == k.token_ids and e.text == k.text   # the option changes p_s only
            steps = e.token_ids + ([stop_id] if e.finish_reason == "stop" else [])
            ref = model.mean_dists([model.prompt_ids(p, False)], [steps])[0]
            np.testing.assert_allclose(e.mean_dist, ref, atol=1e-5)
            if e.finish_reason == "stop":
                stopped += 1
                assert not np.allclose(e.mean_dist, k.mean_dist, atol=1e-4)
            else:
                np.testing.assert_allclose(e.mean_dist, k.mean_dist, atol=1e-6)
    assert stopped >= 1


def test_p_s_of_an_answer_that_stops_at_once_is_the_stop_steps_distribution(model):
    first = model.generate(PROMPTS[:1], 1, Sampling(max_new_tokens=4, temperature=0.0))[0][0]
    stop = first.text[0]                       # greedy: the first step samples exactly this character
    sampling = Sampling(max_new_tokens=4, temperature=0.0, stop=(stop,), return_dist=True)
    kept = model.generate(PROMPTS[:1], 1, sampling)[0][0]
    assert kept.text == "" and kept.mean_dist is None          # no answer token: nothing to average
    every = model.generate(PROMPTS[:1], 1, Sampling(**{**sampling.__dict__, "dist_includes_stop": True}))[0][0]
    ref = model.mean_dists([model.prompt_ids(PROMPTS[0], False)], [[ord(stop) + 3]])[0]
    np.testing.assert_allclose(every.mean_dist, ref, atol=1e-5)


def test_host_cut_stop_with_every_step_rescores_through_the_stop_step(model):
    free = model.generate(PROMPTS, 2, Sampling(max_new_tokens=12, temperature=0.5, seed=2))
    stop = free[1][0].text[2:4]
    got = model.generate(PROMPTS, 2, Sampling(max_new_tokens=12, temperature=0.5, seed=2, stop=(stop,),
                                              return_dist=True, dist_includes_stop=True))
    c = got[1][0]
    assert c.text == free[1][0].text[:2]
    ref = model.mean_dists([model.prompt_ids(PROMPTS[1], False)], [free[1][0].token_ids[:3]])[0]
    np.testing.assert_allclose(c.mean_dist, ref, atol=1e-5)


def test_the_new_option_keeps_old_generation_cache_keys():
    assert "dist_includes_stop" not in Sampling(return_dist=True).key()
    assert Sampling(return_dist=True, dist_includes_stop=True).key()["dist_includes_stop"] is True
