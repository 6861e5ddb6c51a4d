"""Bad input: malformed rows and over-long prompts are counted; bad checkpoints and configs are one line."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.finetune.conftest import LONG_PROMPT_BYTES, SEQ_LEN, write_jsonl
from patch_training.errors import UserError, one_line


def test_malformed_and_too_long_rows_are_counted_and_reported(train_rows):
    from case2code_finetune.prompt_rows import _row_report_line
    meta = train_rows.meta
    assert meta["row_report"]["malformed"] == 3 and meta["row_report"]["total"] == 52
    assert meta["too_long"] == 1 and meta["truncated"] == 0
    assert meta["longest_example"] == LONG_PROMPT_BYTES + len("def g():\n    return 1") + 1
    line = _row_report_line("task case2code/train", meta)
    assert "\n" not in line and "3 malformed" in line and "1 rows longer than sequence_length=128" in line


def test_truncate_prompts_cuts_the_prompt_from_the_left_and_keeps_the_answer(c2c_dir, cache_dir, tmp_path):
    from case2code_finetune import tasks
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset
    answer = "def g():\n    return 1"
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a" * 50 + "b" * LONG_PROMPT_BYTES, "output": answer}])
    name = tasks.register_prompt_answer_task(name="long_only", train_files=[str(tmp_path / "train.jsonl")])
    with pytest.raises(UserError) as e:
        make_prompt_answer_dataset(task=name, split="train", sequence_length=64, vocab={"kind": "byte"},
                                   cache_dir=str(cache_dir))
    assert "no usable rows" in one_line(e.value) and "1 longer than sequence_length=64" in one_line(e.value)
    ds = make_prompt_answer_dataset(task=name, split="train", sequence_length=64, vocab={"kind": "byte"},
                                    cache_dir=str(cache_dir), truncate_prompts=True)
    assert ds.meta["truncated"] == 1 and ds.num_rows == 1
    row = ds.rows(np.array([0]))
    weights, targets = row["decoder_loss_weights"][0], row["decoder_target_tokens"][0]
    assert bytes(int(t) - 3 for t in targets[weights == 1][:-1]).decode() == answer
    assert np.all(targets[weights == 0] == ord("b") + 3)  # only the prompt's tail is left
    assert np.count_nonzero(targets) == 64


def test_missing_split_file_and_unknown_task_are_one_line(tmp_path):
    from case2code_finetune import tasks
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset
    with pytest.raises(UserError, match="not found"):
        tasks.register_case2code_dir(name="nowhere", data_dir=str(tmp_path / "missing"))
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": "p", "output": "o"}])
    name = tasks.register_case2code_dir(name="only_train", data_dir=str(tmp_path))
    with pytest.raises(UserError) as e:
        make_prompt_answer_dataset(task=name, split="validation", sequence_length=64, vocab={"kind": "byte"})
    assert "no split 'validation'" in one_line(e.value)
    with pytest.raises(UserError, match="unknown prompt/answer task"):
        make_prompt_answer_dataset(task="never_registered", split="train", sequence_length=64)


def test_init_checkpoint_problems_are_one_line(init_ckpt, tmp_path):
    from case2code_finetune.finetuning import _open_init
    from patch_training.partitioning import make_mesh
    from patch_training.training import params_loader

    for path in (None, tmp_path / "missing"):
        with pytest.raises(UserError) as e:
            _open_init(path)
        assert "\n" not in str(e.value)
    # Different shapes: a config that does not match the saved arrays.
    bad = tmp_path / "bad_shapes"
    shutil.copytree(init_ckpt, bad)
    cfg = json.loads((bad / "model_config.json").read_text())
    (bad / "model_config.json").write_text(json.dumps({**cfg, "hidden_size": 48}))
    init, _ = _open_init(bad)
    with pytest.raises(UserError) as e:
        params_loader(init.path, init.config, make_mesh())()   # what training.train loads for a fresh start
    assert "do not match" in str(e.value) and "\n" not in str(e.value)
    # A model too small for its vocabulary (byte vocabulary: 259 ids).
    small = tmp_path / "small_vocab"
    shutil.copytree(init_ckpt, small)
    (small / "model_config.json").write_text(json.dumps({**cfg, "vocab_size": 200}))
    with pytest.raises(UserError, match="smaller than its vocabulary"):
        _open_init(small)
    # A run that names another vocabulary or changes a shape is refused.
    with pytest.raises(UserError, match="may not change hidden_size"):
        _open_init(init_ckpt, model_overrides={"hidden_size": 64})
    import sentencepiece as spm
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(300)))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=60,
                                   minloglevel=2)
    with pytest.raises(UserError) as e:
        _open_init(init_ckpt, vocab={"kind": "sentencepiece", "model_path": str(tmp_path / "sp.model")})
    assert "tokenize with the checkpoint's" in str(e.value) and "\n" not in str(e.value)
    ok, ok_vocab = _open_init(init_ckpt, model_overrides={"remat_policy": "full"})
    assert ok.config.remat_policy == "full" and ok_vocab.vocab_size == 259
