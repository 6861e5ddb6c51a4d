"""Fine-tuning end to end: the start equals the pretrained model, an HF import starts, SIGKILL resume is exact."""
from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.finetune.conftest import REPO, SEQ_LEN
from tests.support import xla_env

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run_finetune_delayed.py"
GIN = HERE / "tiny_ft.gin"
STEPS = 10


def _env(cache_dir: Path, **extra: str) -> dict[str, str]:
    return xla_env.subprocess_env(PATCH_TRAINING_CACHE_DIR=str(cache_dir), **extra)


def _cmd(run_dir: Path, c2c_dir: Path, init: Path) -> list[str]:
    return [sys.executable, str(RUNNER), f"--gin_file={GIN}", f"--gin.MODEL_DIR='{run_dir}'",
            f"--gin.INIT_CHECKPOINT='{init}'", f"--gin.CASE2CODE_DATA_DIR='{c2c_dir}'"]


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _final_params(run_dir: Path) -> dict[str, np.ndarray]:
    import jax
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(run_dir / "checkpoints" / str(STEPS) / "params")
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, c2c_dir, init_ckpt, cache_dir, train_rows, monkeypatch_module) -> Path:
    """One uninterrupted run of the CLI's `main`, in this process: the killed and resumed runs below are real
    subprocesses, and this one needs no fresh interpreter (a subprocess re-imports TensorFlow and seqio, ~25% of
    this file's time). Same XLA flags and compilation cache, so the same programs: bit-identical losses."""
    import gin

    from case2code_finetune.finetune import main
    run = tmp_path_factory.mktemp("ref") / "run"
    monkeypatch_module.setenv("PATCH_TRAINING_CACHE_DIR", str(cache_dir))
    gin.clear_config()
    try:
        assert main(_cmd(run, c2c_dir, init_ckpt)[2:]) == 0
    finally:
        gin.clear_config()
    return run


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _loss_fn(config):
    import jax
    from patch_training.model import Transformer
    from patch_training.train_step import loss_and_stats
    model = Transformer(config)
    return jax.jit(lambda params, batch: loss_and_stats(params, batch, model, 1)[0] / loss_and_stats(
        params, batch, model, 1)[1]["weight_sum"])


def test_step_zero_loss_is_the_pretrained_models_loss(reference, train_rows, tiny_params, tiny_config):
    first_step, first_loss = _losses(reference)[0]
    expected = float(_loss_fn(tiny_config)(tiny_params, train_rows.host_batch(0, 4)))
    assert first_step == 1
    assert first_loss == pytest.approx(expected, rel=1e-5)
    summary = json.loads((reference / "finetune.json").read_text())
    assert summary["status"] == "completed" and summary["final_step"] == STEPS
    assert summary["before"]["validation"]["tokens"] == summary["after"]["validation"]["tokens"] > 0
    assert summary["case2code_pass_at_1"]["status"] == "not requested"


def test_sigkill_then_resume_is_bit_identical(reference, tmp_path, c2c_dir, init_ckpt, cache_dir):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, c2c_dir, init_ckpt), cwd=REPO, env=_env(cache_dir, FT_TEST_DELAY_S="0.4"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while True:  # past the step-3 checkpoint, before the end
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "step 5 not reached"
            path = killed / "metrics.jsonl"
            if path.exists() and any(f'"step": 5,' in l for l in path.read_text().splitlines()):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert _losses(killed)[-1][0] < STEPS
    resumed = subprocess.run(_cmd(killed, c2c_dir, init_ckpt), cwd=REPO, env=_env(cache_dir), capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint step" in resumed.stderr
    assert _losses(killed) == _losses(reference)
    a, b = _final_params(reference), _final_params(killed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_hf_imported_checkpoint_is_a_valid_start(tmp_path, c2c_dir, cache_dir, train_rows):
    import torch
    import transformers
    from case2code_finetune.finetuning import run_finetune
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset
    from patch_training.hf_convert import import_hf
    from patch_training.contract.checkpoint import Checkpoint
    from patch_training.trainer import TrainerConfig

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                         tie_word_embeddings=False)
    transformers.LlamaForCausalLM(hf_config).save_pretrained(tmp_path / "hf", safe_serialization=True)
    ckpt = import_hf(tmp_path / "hf", tmp_path / "imported")
    opened = Checkpoint.open(ckpt)
    params, config = opened.params, opened.config

    data = functools.partial(make_prompt_answer_dataset, task="case2code", sequence_length=SEQ_LEN,
                             cache_dir=str(cache_dir))
    result, summary = run_finetune(
        model_dir=str(tmp_path / "ft"), init_checkpoint=str(ckpt), train_data=functools.partial(data, split="train"),
        eval_data=functools.partial(data, split="validation"),
        trainer_config=TrainerConfig(num_steps=2, batch_size=4, sequence_length=SEQ_LEN, log_every=1, eval_batches=1,
                                     plot=False))
    assert result.status == "completed" and summary["init_checkpoint"] == str(Path(ckpt).absolute())
    expected = float(_loss_fn(config)(params, train_rows.host_batch(0, 4)))
    assert _losses(tmp_path / "ft")[0][1] == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(summary["after"]["validation"]["loss"])
