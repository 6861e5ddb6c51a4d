"""Stage plan arithmetic, the block walk, and the three refused inputs (one clear line each)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patch_training import patch_cost
from patch_training import stage_data as sd
from patch_training.errors import UserError
from patch_training.two_stage_training import TwoStageConfig, check_stage_request
from tests.support.stream import StreamRows

REPO = Path(__file__).resolve().parents[2]


def test_steps_per_stage_follow_the_token_budget():
    # λ·budget/(B1·K·T) and (1-λ)·budget/(B2·T) with different batch sizes per stage.
    cfg = TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=16, patch_batch_size=4,
                         patch_size=8, patch_fraction="2/3")
    s1, s2 = cfg.plan()
    assert (s1.num_steps, s1.batch_size, s1.sequence_length, s1.network_length) == (
        2 * 2**20 // (4 * 8 * 128), 4, 1024, 128)
    assert (s2.num_steps, s2.batch_size, s2.sequence_length, s2.network_length) == (2**20 // (16 * 128), 16, 128, 128)
    assert s1.tokens + s2.tokens == 3 * 2**20
    assert patch_cost.relative_cost(2 / 3, 8) == pytest.approx(2 / 24 + 1 / 3)


@pytest.mark.parametrize("fraction, names", [(0, ["stage2_token"]), (1, ["stage1_patch_k4"]),
                                             ("1/2", ["stage1_patch_k4", "stage2_token"])])
def test_lambda_zero_is_token_only_and_one_is_patch_only(fraction, names):
    cfg = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_size=4, patch_fraction=fraction)
    assert [p.name for p in cfg.plan()] == names


def test_budget_too_small_for_a_stage_is_refused():
    cfg = TwoStageConfig(token_budget=100, sequence_length=16, batch_size=4, patch_size=4, patch_fraction="1/2")
    with pytest.raises(UserError, match="no step"):
        cfg.plan()


@pytest.mark.parametrize("fraction", [1.5, -0.1, "4/3", "two thirds"])
def test_lambda_outside_unit_interval_is_refused(fraction):
    cfg = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_fraction=fraction)
    with pytest.raises(UserError) as e:
        cfg.validate()
    assert "patch_fraction" in str(e.value) and "[0, 1]" in str(e.value) and "\n" not in str(e.value)


def test_k_not_dividing_the_sequence_length_is_refused():
    cfg = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_size=4, patch_sequence_length=30)
    with pytest.raises(UserError, match="K=4 does not divide the patch-stage sequence length 30"):
        cfg.validate()
    from patch_training.trainer import TrainerConfig
    with pytest.raises(UserError, match="patch_size=3 does not divide sequence_length=64"):
        TrainerConfig(num_steps=1, batch_size=1, sequence_length=64, patch_size=3).validate()


def test_stage2_without_stage1_checkpoint_is_refused(tmp_path):
    cfg = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_size=4)
    with pytest.raises(UserError, match="cannot start stage 2: no stage-1 checkpoint"):
        check_stage_request(tmp_path, cfg, 2)
    check_stage_request(tmp_path, cfg, 1)  # stage 1 needs nothing
    token_only = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_fraction=0)
    check_stage_request(tmp_path, token_only, 2)
    with pytest.raises(UserError, match="has no stage 1"):
        check_stage_request(tmp_path, token_only, 1)


def test_cli_stage2_alone_prints_one_error_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "patch_training.two_stage",
                           "--gin_file=configs/experiments/patch/tiny_cpu_patch.gin",
                           f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--stage=2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "no stage-1 checkpoint" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "stage2_token").exists()


def test_block_walk_is_a_permutation_per_epoch_and_patch_rows_match_token_rows():
    walk = sd.BlockWalk(10, seed=3)
    ids = walk.block_ids(np.arange(30))
    for epoch in range(3):
        assert sorted(ids[epoch * 10:(epoch + 1) * 10]) == list(range(10))
    assert not np.array_equal(ids[:10], ids[10:20])
    patch, tokens = StreamRows(64, 4, 10), StreamRows(16, 1, 40)
    sd.check_same_stream(patch, tokens, 4)
    with pytest.raises(UserError, match="different token streams"):
        sd.check_same_stream(patch, StreamRows(16, 1, 40, seed=1), 4)
    stage1 = sd.PatchStageData(patch, walk).host_batch(0, 2)["decoder_target_tokens"]
    stage2 = sd.TokenStageData(tokens, walk, 4, skip_blocks=0).host_batch(0, 8)["decoder_target_tokens"]
    np.testing.assert_array_equal(stage1.reshape(-1), stage2.reshape(-1))  # same blocks, same text
