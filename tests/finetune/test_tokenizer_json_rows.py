"""Fine-tuning a checkpoint that carries a tokenizer.json tokenizes its rows with it (not with bytes)."""
import json

import numpy as np
import pytest

from tests.finetune.conftest import SEQ_LEN, TINY
from tests.support.tokenizers import write_tokenizer_dir


@pytest.fixture(scope="module")
def imported(tmp_path_factory, tiny_params, tiny_config):
    """A checkpoint as `hf_convert import` writes it from an HF directory with only a tokenizer.json."""
    from patch_training.hf_convert import export_hf, import_hf
    from patch_training.params_io import save_params
    root = tmp_path_factory.mktemp("ft_tok")
    plain = save_params(root / "plain", tiny_params, tiny_config, {"kind": "byte"})
    hf = write_tokenizer_dir(export_hf(plain, root / "hf"), vocab_size=300)
    return import_hf(hf, root / "imported")


def test_rows_use_the_checkpoint_tokenizer(imported, c2c_dir, cache_dir):
    from tokenizers import Tokenizer

    from case2code_finetune import tasks
    from case2code_finetune.finetuning import _open_init
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset

    init, vocab = _open_init(imported)
    assert init.vocab_spec["kind"] == "hf_tokenizer"
    tok = Tokenizer.from_file(str(imported / "tokenizer.json"))
    name = tasks.register_case2code_dir(name="case2code", data_dir=str(c2c_dir))
    ds = make_prompt_answer_dataset(task=name, split="validation", sequence_length=SEQ_LEN, vocab=vocab,
                                    cache_dir=str(cache_dir), pack=False)
    rows = [json.loads(line) for line in (c2c_dir / "validation.jsonl").read_text().splitlines()]
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
    expected = {enc(r["prompt"]) + enc(r["output"]) + (2,) for r in rows}   # prompt, answer, EOS
    got = ds.rows(np.arange(ds.num_rows))["decoder_target_tokens"]
    got = {tuple(int(t) for t in row if t) for row in got}
    assert got == expected
    assert max(max(r) for r in got) >= 259            # BPE merges, not the byte vocabulary's ids
    assert TINY["vocab_size"] >= tok.get_vocab_size()
    import tensorflow as tf
    text = rows[0]["prompt"]
    assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == list(enc(text))     # eager, as well
    assert vocab.decode(list(enc(text))) == text
