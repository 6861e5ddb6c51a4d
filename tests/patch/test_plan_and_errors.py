"""Stage plan arithmetic, the block walk, and the three refused inputs (one clear line each)."""
from __future__ import annotations

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


def test_default_patch_batch_gives_equal_tokens_per_step_and_lambda_of_the_updates():
    # T=128, B2=16: 2,048 tokens per token step. K=4 -> B1 = 16/4 = 4 rows of 512 tokens = 2,048 too.
    # Budget 3 x 2^20 = 1,536 steps' worth; λ=2/3 -> 2^21 / 2,048 = 1,024 patch steps, 2^20 / 2,048 = 512 token steps.
    cfg = TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=16, patch_size=4,
                         patch_fraction="2/3")
    s1, s2 = cfg.plan()
    assert (s1.num_steps, s1.batch_size, s1.sequence_length) == (1024, 4, 512)
    assert (s2.num_steps, s2.batch_size, s2.sequence_length) == (512, 16, 128)
    assert s1.num_steps == 2 * s2.num_steps and s1.batch_size * s1.sequence_length == 2048 == 16 * 128
    # The 370M Table 1 row, as run_patch.sh / run_token.sh: 256 x 8,192 and 1,024 x 2,048 tokens per step;
    # 2.4e11 / 2,097,152 = 114,440.9 -> 114,441 patch steps, 1.2e11 / 2,097,152 = 57,220.5 -> 57,220 token steps.
    table1 = TwoStageConfig(token_budget=360_000_000_000, sequence_length=2048, batch_size=1024, patch_size=4)
    p1, p2 = table1.plan()
    assert (p1.num_steps, p1.batch_size, p1.sequence_length) == (114_441, 256, 8192)
    assert (p2.num_steps, p2.batch_size, p2.sequence_length) == (57_220, 1024, 2048)
    lines = patch_cost.format_plan(table1.plan(), token_budget=table1.token_budget, patch_fraction=2 / 3,
                                   patch_size=4)
    assert lines[0].endswith("171,661 optimizer updates")
    assert lines[2].split() == ["stage1_patch_k4", "114,441", "256", "8,192", "2,097,152", "2,048",
                                "240,000,172,032", "66.7%"]
    assert lines[3].split() == ["stage2_token", "57,220", "1,024", "2,048", "2,097,152", "2,048",
                                "119,999,037,440", "33.3%"]


def test_k_not_dividing_the_token_batch_is_refused_unless_b1_is_given():
    cfg = TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=10, patch_size=4)
    with pytest.raises(UserError) as e:
        cfg.plan()
    message = str(e.value)
    assert "K=4 does not divide batch_size=10" in message and "PATCH_BATCH_SIZE" in message and "\n" not in message
    explicit = TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=10, patch_size=4,
                              patch_batch_size=3)
    assert explicit.plan()[0].batch_size == 3
    # No patch stage, nothing to divide.
    assert TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=10, patch_fraction=0).plan()


def test_plan_only_prints_the_table1_plan_without_data(capsys):
    import gin
    from patch_training.main.two_stage import main
    # Neither the corpus directory nor the tokenizer nor MODEL_DIR is given: the plan needs none of them.
    assert main(["--gin_file=configs/experiments/patch/370m_table1_k4_lambda2_3_v5p-128.gin", "--plan_only"]) == 0
    gin.clear_config()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("two-stage plan: 360,000,000,000 tokens, K=4") and len(out) == 4
    assert out[2].split()[:5] == ["stage1_patch_k4", "114,441", "256", "8,192", "2,097,152"]
    assert out[3].split()[:5] == ["stage2_token", "57,220", "1,024", "2,048", "2,097,152"]


def test_an_old_default_plan_record_is_resolved_to_its_own_b1(tmp_path):
    """A two_stage.json from before B1 defaulted to B2/K holds B1 only per stage; an unset B1 then
    resumes with it, and a new run dir gets B2/K."""
    import dataclasses
    import json
    from patch_training import two_stage_training as ts
    cfg = TwoStageConfig(token_budget=3 * 2**20, sequence_length=128, batch_size=16, patch_size=4)
    old_plans = dataclasses.replace(cfg, patch_batch_size=16).plan()
    old = ts.plan_record(cfg, old_plans, seed=0)
    del old["patch_batch_size"]
    (tmp_path / ts.PLAN_FILE).write_text(json.dumps(old))
    assert check_stage_request(tmp_path, cfg, None) == old_plans          # 256 patch steps of 16 rows
    assert check_stage_request(tmp_path / "new", cfg, None) == cfg.plan()  # 1,024 of 4 rows
    resolved = ts.resolve_config(tmp_path, cfg)
    ts._check_plan(tmp_path, ts.plan_record(resolved, resolved.plan(), seed=0))   # accepted, rewritten
    assert json.loads((tmp_path / ts.PLAN_FILE).read_text())["patch_batch_size"] == 16
    assert ts.resolve_config(tmp_path, cfg).plan() == old_plans            # and again on the next resume
    with pytest.raises(UserError, match="differs in .*patch_batch_size"):  # another plan is still refused
        ts._check_plan(tmp_path, ts.plan_record(cfg, cfg.plan(), seed=0))


@pytest.mark.parametrize("fraction, names", [(0, ["stage2_token"]), (1, ["stage1_patch_k4"]),
                                             ("1/2", ["stage1_patch_k4", "stage2_token"])])
def test_lambda_zero_is_token_only_and_one_is_patch_only(fraction, names):
    cfg = TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_size=4, patch_fraction=fraction)
    assert [p.name for p in cfg.plan()] == names


def test_budget_too_small_for_a_stage_is_refused():
    # Half of 50 tokens is under one patch step of 1 x 64 tokens.
    cfg = TwoStageConfig(token_budget=50, sequence_length=16, batch_size=4, patch_size=4, patch_fraction="1/2")
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


def test_cli_stage2_alone_prints_one_error_line(tmp_path, capsys):
    # The CLI's own wrapper (`run_cli`, what `python -m patch_training.two_stage` runs), in this process: a
    # subprocess would spend ~6 s importing TensorFlow to print one line.
    import gin

    from patch_training.errors import run_cli
    from patch_training.two_stage import PROG, main
    gin.clear_config()
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, [f"--gin_file={REPO / 'configs/experiments/patch/tiny_cpu_patch.gin'}",
                           f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--stage=2"], prog=PROG)
    finally:
        gin.clear_config()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    errors = [l for l in stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "no stage-1 checkpoint" in errors[0] and "Traceback" not in stderr
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
