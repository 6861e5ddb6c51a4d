"""The variants' gin files resolve fully; the CLI reports a bad init checkpoint in one line and writes nothing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.finetune.conftest import REPO
from patch_training.gin_utils import CONFIG_ROOT

EXPERIMENTS = sorted((CONFIG_ROOT / "experiments" / "case2code").glob("*_cpu.gin")) + \
    sorted((CONFIG_ROOT / "experiments" / "case2code").glob("*_tpu.gin"))
MACROS = ["MODEL_DIR = '/tmp/x'", "INIT_CHECKPOINT = '/tmp/ckpt'", "CASE2CODE_DATA_DIR = '/tmp/data'",
          "INSTRUCT_DATA_DIR = '/tmp/instruct'"]


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    import gin
    gin.clear_config()  # later tests in this process build configurables directly


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_each_variant_resolves_every_binding(path):
    import gin
    import case2code_finetune.configurables  # noqa: F401
    from patch_training.gin_utils import parse_gin
    parse_gin([str(path)], MACROS)  # finalize: every %gin.REQUIRED is set
    train_data = gin.query_parameter("finetuning.run_finetune.train_data")
    # pass@1 is the eval's own hook, handed to the training entry by the run file (not imported by the package)
    assert "finetune_hook.case2code_pass_at_1" in str(gin.query_parameter("training.train.hooks"))
    if "mixed" in path.name:
        assert "make_mixture" in str(train_data)
        rates = gin.query_parameter(f"{'mixed_pretrain' if 'pretrain' in path.name else 'mixed_instruct'}"
                                    "/mixtures.make_mixture.rates")
        assert len(rates) == 2
    else:
        assert "make_prompt_answer_dataset" in str(train_data)


def test_cli_missing_init_checkpoint_is_one_line_and_writes_nothing(tmp_path, c2c_dir):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "case2code_finetune.finetune",
         "--gin_file=configs/experiments/case2code/direct_tiny_cpu.gin", f"--gin.MODEL_DIR='{run_dir}'",
         f"--gin.INIT_CHECKPOINT='{tmp_path / 'no_such_ckpt'}'", f"--gin.CASE2CODE_DATA_DIR='{c2c_dir}'"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
                                                                    "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "checkpoint directory not found" in errors[0]
    assert not run_dir.exists()
