"""Backends from disk: HF tokenizers (tokenizer.json only) with a chat template and BOS once; bad inputs."""
import logging
import shutil

import numpy as np
import pytest

from evals.backends import add_model_args, open_model, open_model_from_args
from evals.backends.text_vocab import from_hf_dir
from evals.model_api import Sampling
from patch_training.errors import UserError

from tests.support.tokenizers import write_tokenizer_dir as _tokenizer_dir  # noqa: E402


def test_tokenizer_json_vocab_bos_once_and_chat(tmp_path, caplog):
    vocab = from_hf_dir(_tokenizer_dir(tmp_path / "tok"))
    assert vocab.bos_id == 1 and vocab.eos_ids == (2, 3) and vocab.add_bos
    text = "def add(a, b):\n    return a + b"
    assert vocab.decode(vocab.encode(text)) == text
    ids = vocab.encode_prompt(text)
    assert ids[0] == 1 and ids.count(1) == 1
    with caplog.at_level(logging.INFO, logger="evals.backends.text_vocab"):
        chat = vocab.encode_chat([{"role": "user", "content": "hello"}])
    assert chat[0] == 1 and chat.count(1) == 1                      # the template's own BOS, not a second one
    assert vocab.decode(chat[1:]) == "<|user|>hello<|eot|><|assistant|>"
    assert "token ids" in caplog.text and str(chat[:5])[1:-1] in caplog.text


def test_lead_prompt_opens_the_assistant_turn_with_its_lead(tmp_path):
    from evals.model_api import LeadPrompt, chat_parts
    vocab = from_hf_dir(_tokenizer_dir(tmp_path / "tok"))
    p = LeadPrompt("Add 2 and 3.\nThe result is", "The result is")
    assert p == "Add 2 and 3.\nThe result is" and chat_parts(p) == ("Add 2 and 3.", "The result is")
    assert chat_parts("plain") == ("plain", "")
    ids = vocab.encode_chat([{"role": "user", "content": p.user_text}], assistant_prefix=p.lead)
    assert vocab.decode(ids[1:]) == "<|user|>Add 2 and 3.<|eot|><|assistant|>The result is"
    with pytest.raises(ValueError, match="does not end with its lead"):
        LeadPrompt("Add 2 and 3.", "The result is")


@pytest.mark.slow
def test_hf_dir_end_to_end_and_bad_tokenizers(tmp_path, tiny_checkpoint):
    from patch_training.hf_convert import export_hf
    hf = export_hf(tiny_checkpoint, tmp_path / "hf")
    _tokenizer_dir(hf)
    model = open_model(hf_dir=str(hf), batch_size=2)
    out = model.generate(["hello"], 1, Sampling(max_new_tokens=4, chat=True))[0][0]
    assert out.finish_reason in ("stop", "length") and len(out.token_logprobs) == len(out.token_ids)
    assert np.isfinite(model.loglikelihood([("hello", " world")])[0])
    broken = tmp_path / "broken"
    shutil.copytree(hf, broken)
    (broken / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(UserError, match="tokenizer file .* does not load"):
        open_model(hf_dir=str(broken))
    (broken / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer.json or tokenizer.model"):
        open_model(hf_dir=str(broken))


def test_checkpoint_without_tokenizer_and_args(tmp_path, tiny_checkpoint):
    import argparse
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "vocab.json").unlink()
    with pytest.raises(UserError, match="no vocab.json"):
        open_model(checkpoint=str(bare))
    with pytest.raises(UserError, match="exactly one"):
        open_model()
    ap = argparse.ArgumentParser()
    add_model_args(ap)
    with pytest.raises(SystemExit):
        ap.parse_args(["--checkpoint", "a", "--endpoint", "b"])
    args = ap.parse_args(["--checkpoint", str(tiny_checkpoint), "--batch_size", "2"])
    model = open_model_from_args(args, default_cache_dir=str(tmp_path / "cache"))
    assert type(model).__name__ == "CachedModel" and (tmp_path / "cache").is_dir()
    assert model.generate(["ab"], 1, Sampling(max_new_tokens=4))[0][0].finish_reason in ("stop", "length")


def test_mean_dist_equals_the_engines_per_step_average(jax_model):
    """The bounded-memory scoring pass gives what averaging the engine's [n, V] probabilities gives."""
    from evals.sampling import SamplingConfig
    ids = jax_model.prompt_ids("def f(x):", chat=False)
    ref = jax_model.decoder.generate([ids], max_new_tokens=4, sampling=SamplingConfig(), stop_tokens=(),
                                     return_probs=True)[0][0]
    got = jax_model.generate(["def f(x):"], 1, Sampling(max_new_tokens=4, return_dist=True))[0][0]
    assert got.token_ids == ref.token_ids
    np.testing.assert_allclose(got.mean_dist, ref.probs.mean(0), atol=1e-5)
