"""Every way of opening a model reads its tokenizer the same way (issue 26's tokenizer bugs).

An HF directory whose tokenizer is only `tokenizer.json`, with the transformers 5 layout (the chat
template in `chat_template.jinja`), must give the same ids and chat text through `--hf_dir`, through a
checkpoint imported from it, and through `evals.generate`.
"""
import json
import shutil

import pytest

from evals.backends import open_model
from evals.model_api import Sampling
from patch_training.errors import UserError
from tests.support.tokenizers import TEMPLATE, write_tokenizer_dir

TEXT = "def add(a, b):\n    return a + b"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, tiny_checkpoint):
    """An HF directory (safetensors + tokenizer.json, template in chat_template.jinja) of the tiny model."""
    from patch_training.hf_convert import export_hf
    hf = export_hf(tiny_checkpoint, tmp_path_factory.mktemp("t5") / "hf")
    return write_tokenizer_dir(hf, template_in="jinja")


@pytest.fixture(scope="module")
def imported(hf_dir, tmp_path_factory):
    from patch_training.hf_convert import import_hf
    return import_hf(hf_dir, tmp_path_factory.mktemp("t5") / "ckpt")


def _bpe_ids(directory, text):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text, add_special_tokens=False).ids


def test_chat_template_from_chat_template_jinja(hf_dir):
    """transformers 5 keeps the template in chat_template.jinja: --chat must work from it."""
    model = open_model(hf_dir=str(hf_dir), batch_size=2)
    assert model.vocab.chat_template == TEMPLATE
    ids = model.prompt_ids("hello", chat=True)
    assert model.vocab.decode(ids[1:]) == "<|user|>hello<|eot|><|assistant|>"


def test_import_carries_tokenizer_json(hf_dir, imported):
    """The imported checkpoint names and carries the tokenizer.json; text is encoded with it, not as bytes."""
    assert json.loads((imported / "vocab.json").read_text()) == {"kind": "hf_tokenizer", "model_path": "tokenizer.json"}
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (imported / name).read_bytes() == (hf_dir / name).read_bytes()
    from_ckpt = open_model(checkpoint=str(imported), batch_size=2)
    from_hf = open_model(hf_dir=str(hf_dir), batch_size=2)
    assert from_ckpt.vocab.encode(TEXT) == _bpe_ids(hf_dir, TEXT) != list(TEXT.encode())
    assert from_ckpt.vocab.eos_ids == from_hf.vocab.eos_ids == (2, 3)
    assert from_ckpt.prompt_ids("hello", chat=True) == from_hf.prompt_ids("hello", chat=True)
    out = from_ckpt.generate([TEXT], 1, Sampling(max_new_tokens=3))[0][0]
    assert out.text == from_ckpt.vocab.decode(out.token_ids)


def test_stale_byte_spec_beside_a_tokenizer_is_refused(imported, tmp_path):
    """A checkpoint from before the fix says 'byte' beside its tokenizer.json: one line, not bytes."""
    stale = tmp_path / "stale"
    shutil.copytree(imported, stale)
    (stale / "vocab.json").write_text(json.dumps({"kind": "byte"}))
    with pytest.raises(UserError, match="says 'byte' but the checkpoint carries tokenizer.json"):
        open_model(checkpoint=str(stale))


def test_generate_cli_reads_text_prompts_of_a_tokenizer_json_model(hf_dir, imported, tmp_path, capsys):
    from evals.generate import main
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    rows = {}
    for flag, src in (("--hf_dir", hf_dir), ("--checkpoint", imported)):
        out = tmp_path / f"{flag[2:]}.jsonl"
        assert main([flag, str(src), "--prompts", str(prompts), "--out", str(out), "--max_new_tokens", "3"]) == 0
        assert "skipped" not in capsys.readouterr().err
        rows[flag] = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in rows[flag]] == ["a"]
    assert rows["--hf_dir"][0]["samples"][0]["token_ids"] == rows["--checkpoint"][0]["samples"][0]["token_ids"]
    bare = tmp_path / "bare"
    shutil.copytree(hf_dir, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        (bare / name).unlink()
    with pytest.raises(UserError, match="text prompt, but the model has no tokenizer"):
        main(["--hf_dir", str(bare), "--prompts", str(prompts), "--out", str(tmp_path / "x.jsonl")])


@pytest.mark.parametrize("bos_in_post_processor", [True, False])
def test_bos_follows_the_tokenizer_when_the_config_does_not_say(tmp_path, bos_in_post_processor):
    """transformers 5 writes no add_bos_token: BOS is added exactly when the tokenizer's post-processor adds it
    (LLaMA's does; SmolLM2's does not, and its BOS string is <|im_start|>)."""
    from evals.backends.text_vocab import from_hf_dir
    d = write_tokenizer_dir(tmp_path / "tok", bos_in_post_processor=bos_in_post_processor)
    vocab = from_hf_dir(d)
    assert vocab.bos_id == 1 and vocab.add_bos is bos_in_post_processor
    assert (vocab.encode_prompt(TEXT)[0] == 1) is bos_in_post_processor
