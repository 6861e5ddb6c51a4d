"""Two-stage patch-level training: stage dirs, parameter hand-over with a fresh optimizer and
schedule, disjoint data, cost accounting, patch-length MFU, resume across the stage boundary."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from patch_training import mfu as mfu_lib
from patch_training import stage_data as sd
from patch_training.checkpointing import CheckpointConfig
from patch_training.optimizer import OptimizerConfig
from patch_training.trainer import TrainerConfig
from patch_training.params_io import latest_checkpoint
from patch_training.two_stage_training import StageSources, TwoStageConfig, load_stage_params, run_two_stage
from tests.support.stream import EvalRows, StreamRows, micro_model

REPO = Path(__file__).resolve().parents[2]
T, K, B = 16, 4, 4
# 2/3 of 1920 tokens: 20 steps of B/K = 1 row x 64 tokens; 1/3: 10 steps of 4 rows x 16 tokens. Equal
# tokens per step, so the patch stage takes 2/3 of the optimizer updates.
B1, S1, S2 = B // K, 20, 10
CFG = TwoStageConfig(token_budget=1920, sequence_length=T, batch_size=B, patch_size=K, patch_fraction="2/3",
                     evals_per_stage=2)
TRAINER = TrainerConfig(seed=0, log_every=1, eval_batches=None)   # what both stages share
OPT = OptimizerConfig(learning_rate=1e-2, warmup_steps=3)
CKPT = CheckpointConfig(save_every_steps=1, save_every_seconds=None, keep=None)
STAGE1, STAGE2 = "stage1_patch_k4", "stage2_token"


def make_sources():
    patch, tokens = StreamRows(K * T, K, 100), StreamRows(T, 1, 400)
    return patch, tokens, StageSources(patch_rows=lambda: patch, token_rows=lambda: tokens)


def run(run_dir: Path, stage=None, sources=None, cfg=CFG):
    sources = sources or make_sources()[2]
    evals = {"code": EvalRows(T, 8, seed=5), "wikitext": EvalRows(T, 8, seed=9)}
    return run_two_stage(run_dir, model_config=micro_model(), cfg=cfg, sources=sources, trainer_config=TRAINER,
                         eval_sets=evals, optimizer_config=OPT, checkpoint_config=CKPT, stage=stage, console=False)


def saved_params(stage_dir: Path, step: int) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp
    tree = ocp.StandardCheckpointer().restore(stage_dir / "checkpoints" / str(step) / "params")
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def metrics(stage_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (stage_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_stage") / "run"
    patch, tokens, sources = make_sources()
    result = run(run_dir, sources=sources)
    return run_dir, patch, tokens, result


def test_both_stages_run_in_their_own_dirs_and_validate_on_both_sets(full):
    run_dir, _, _, result = full
    assert [result.stages[i]["status"] for i in (1, 2)] == ["completed", "completed"]
    for name, steps in ((STAGE1, S1), (STAGE2, S2)):
        stage_dir = run_dir / name
        evals = json.loads((stage_dir / "eval.json").read_text())
        assert evals["step"] == steps and set(evals["eval"]) == {"code", "wikitext"}
        assert all(np.isfinite(m["perplexity"]) and m["perplexity"] > 1 for m in evals["eval"].values())
        rows = metrics(stage_dir)
        assert any("eval/wikitext/loss" in r for r in rows) and any("eval/code/loss" in r for r in rows)
        assert max(r["step"] for r in rows) == steps
    # Patch training lowered the token-level validation loss, and stage 2 lowered it further.
    s1 = json.loads((run_dir / STAGE1 / "eval.json").read_text())["eval"]["code"]["loss"]
    s2 = json.loads((run_dir / STAGE2 / "eval.json").read_text())["eval"]["code"]["loss"]
    assert s2 < s1 < np.log(64)


def test_stage2_starts_from_stage1_params_with_fresh_optimizer_and_schedule(full):
    """Stage 2's first step equals one step from stage-1's final params with a new optimizer state."""
    run_dir = full[0]
    from patch_training.partitioning import make_mesh
    from patch_training.partitioning import replicated
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    model = micro_model()
    mesh = make_mesh((1, 1, 1))
    # Stage 2's own schedule (10 steps): the same compiled step the trainer used.
    compiled = compile_train_step(model, OPT, 10, StepConfig(1, 1), mesh)
    state = create_train_state(model, compiled.tx, mesh, TRAINER.seed, compiled.shardings)
    stage1_params = load_stage_params(run_dir / STAGE1, S1, model)
    state = state.replace(params=jax.tree_util.tree_map(lambda p, s: jax.device_put(np.asarray(p), s),
                                                        stage1_params, compiled.shardings.params))
    _, tokens, _ = make_sources()
    walk = sd.BlockWalk(100, TRAINER.seed)
    data = sd.TokenStageData(tokens, walk, K, skip_blocks=S1 * B1)
    step = compiled.train_step
    start = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(stage1_params)[0]}
    # Two steps: the first has lr = schedule(0) = 0, the second shows Adam's moments started from zero.
    for i in (0, 1):
        state, _ = step(state, jax.device_put(data.host_batch(i, B), replicated(mesh)))
        expected = {jax.tree_util.keystr(p): np.asarray(v)
                    for p, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
        got = saved_params(run_dir / STAGE2, i + 1)
        assert expected.keys() == got.keys() == start.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert all(np.array_equal(start[k], v) for k, v in saved_params(run_dir / STAGE2, 1).items())
    assert any(not np.array_equal(start[k], v) for k, v in got.items())
    # Warm-up restarts: step 1 of stage 2 uses lr 0 (schedule(0)), step 2 lr peak/3; step counter reset.
    lr2 = {r["step"]: r["learning_rate"] for r in metrics(run_dir / STAGE2) if "learning_rate" in r}
    lr1 = {r["step"]: r["learning_rate"] for r in metrics(run_dir / STAGE1) if "learning_rate" in r}
    assert lr2[1] == 0.0 and lr2[2] == pytest.approx(OPT.learning_rate / 3)
    assert lr1[1] == 0.0 and lr1[S1] < OPT.learning_rate
    assert min(lr2) == 1


def test_stage2_reads_only_blocks_stage1_did_not(full):
    _, patch, tokens, _ = full
    # The first request of each is the same-stream check (patch row 0 vs token rows 0..K-1).
    stage1_blocks = set(np.concatenate(patch.requested[1:]).tolist())
    stage2_blocks = set((np.concatenate(tokens.requested[1:]) // K).tolist())
    assert len(stage1_blocks) == S1 * B1 and len(stage2_blocks) == S2 * B // K
    assert not stage1_blocks & stage2_blocks


def test_cost_json(full):
    run_dir = full[0]
    cost = json.loads((run_dir / "cost.json").read_text())
    lam = 2 / 3
    assert cost["relative_cost"] == pytest.approx(lam / K + (1 - lam))
    model = micro_model()
    per_row = mfu_lib.training_flops_per_step(model, T, 1)  # patches (= T) as the length in stage 1
    s1, s2 = cost["stages"]
    assert (s1["name"], s1["num_steps"], s1["tokens"], s1["flops"]) == (STAGE1, S1, S1 * B1 * K * T,
                                                                        S1 * B1 * per_row)
    assert (s2["name"], s2["num_steps"], s2["tokens"], s2["flops"]) == (STAGE2, S2, S2 * B * T, S2 * B * per_row)
    assert s1["batch_size"] * s1["sequence_length"] == s2["batch_size"] * s2["sequence_length"]
    assert cost["total_tokens"] == 1920
    assert cost["token_only_flops"] == pytest.approx(1920 / T * mfu_lib.training_flops_per_step(model, T, 1))
    assert cost["relative_flops_analytic"] == pytest.approx(cost["relative_cost"])
    assert all(s["status"] == "completed" and s["wall_s"] > s["eval_s"] > 0 for s in cost["stages"])
    assert cost["total_wall_s"] == pytest.approx(s1["wall_s"] + s2["wall_s"])


def test_patch_stage_mfu_counts_patches_not_tokens(full):
    run_dir = full[0]
    model = micro_model()
    timed = [r for r in metrics(run_dir / STAGE1) if "tflops_per_s_per_device" in r]
    assert timed
    for r in timed:
        flops = r["tflops_per_s_per_device"] * 1e12 * r["step_time_s"]
        assert flops == pytest.approx(mfu_lib.training_flops_per_step(model, T, B1), rel=1e-6)
        assert flops != pytest.approx(mfu_lib.training_flops_per_step(model, K * T, B1), rel=1e-2)


def test_resume_across_the_stage_boundary(full, tmp_path):
    """Killed after stage 1 finished, before stage 2 saved anything: stage 2 restarts from stage-1 params."""
    run_dir = tmp_path / "run"
    first = run(run_dir, stage=1)
    assert first.stages[1]["status"] == "completed" and not (run_dir / STAGE2).exists()
    assert json.loads((run_dir / "cost.json").read_text())["stages"][1]["status"] == "not started"
    # Stage 1 is done, so rerunning the whole experiment skips it and runs only stage 2.
    second = run(run_dir)
    assert second.stages[2]["status"] == "completed"
    assert json.loads((run_dir / STAGE1 / "stage_summary.json").read_text())["segments"] == 1
    want, got = saved_params(full[0] / STAGE2, 10), saved_params(run_dir / STAGE2, 10)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


class CrashingRows(StreamRows):
    """Token rows whose `crash_at`-th request raises, like a process dying mid-stage."""

    def __init__(self, *args, crash_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at = crash_at

    def rows(self, ids):
        if len(self.requested) == self.crash_at:
            raise RuntimeError("simulated crash")
        return super().rows(ids)


def test_resume_inside_stage2_matches_the_uninterrupted_run(full, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(full[0] / STAGE1, run_dir / STAGE1)
    shutil.copy(full[0] / "two_stage.json", run_dir / "two_stage.json")
    # Request 0 is the same-stream check; request 7 is stage 2's step-7 batch (steps 1-6 saved).
    crashing = CrashingRows(T, 1, 400, crash_at=7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(run_dir, sources=StageSources(patch_rows=lambda: StreamRows(K * T, K, 100), token_rows=lambda: crashing))
    saved = sorted(int(p.name) for p in (run_dir / STAGE2 / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) == 6
    result = run(run_dir)
    assert result.stages[2]["status"] == "completed"
    want, got = saved_params(full[0] / STAGE2, 10), saved_params(run_dir / STAGE2, 10)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    steps = [r["step"] for r in metrics(run_dir / STAGE2) if "loss" in r and "eval/code/loss" not in r]
    assert steps == sorted(set(steps)) and max(steps) == 10  # metrics cut back to the checkpoint, no duplicates


def test_stage1_killed_before_its_eval_json_resumes_to_the_same_eval_json(full, tmp_path):
    """Issue 24 item 6. The kill point, built directly: stage 1's final checkpoint is on disk, its
    eval.json and stage_summary.json (written after it) are not, and stage 2 has not started."""
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(full[0] / STAGE1, run_dir / STAGE1)
    shutil.copy(full[0] / "two_stage.json", run_dir / "two_stage.json")
    for name in ("eval.json", "stage_summary.json"):
        (run_dir / STAGE1 / name).unlink()
    want = json.loads((full[0] / STAGE1 / "eval.json").read_text())
    assert isinstance(want["train_loss"], float)
    result = run(run_dir, stage=1)   # resumes at the final step: no train step runs, only the evaluation
    assert result.stages[1]["status"] == "completed"
    assert json.loads((run_dir / STAGE1 / "eval.json").read_text()) == want


def test_a_run_dir_planned_under_the_old_default_resumes_with_its_recorded_plan(tmp_path):
    """Before issue 25 an unset B1 meant B2 rows of K·T tokens (5 patch steps of 4 rows here); such a
    run dir, interrupted, must finish that plan rather than be re-planned at B2/K rows (20 steps)."""
    import dataclasses
    run_dir = tmp_path / "run"
    old = dataclasses.replace(CFG, patch_batch_size=B)
    patch = CrashingRows(K * T, K, 100, crash_at=4)   # steps 1-3 train, step 4's batch crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(run_dir, stage=1, cfg=old, sources=StageSources(patch_rows=lambda: patch,
                                                            token_rows=lambda: StreamRows(T, 1, 400)))
    # What an old two_stage.json held: B1 only inside the stage list, no top-level patch_batch_size.
    record = json.loads((run_dir / "two_stage.json").read_text())
    assert record.pop("patch_batch_size") == B
    (run_dir / "two_stage.json").write_text(json.dumps(record))
    assert latest_checkpoint(run_dir / STAGE1) == 3
    assert [p.num_steps for p in CFG.plan()] == [S1, S2]   # what a new run dir would get

    patch, tokens, sources = make_sources()
    result = run(run_dir, stage=1, sources=sources)        # B1 unset, as in the old run's config
    assert result.stages[1]["status"] == "completed"
    assert latest_checkpoint(run_dir / STAGE1) == 5
    assert [len(ids) for ids in patch.requested[1:]] == [B] * 2   # steps 4-5, 4 rows each
    saved = json.loads((run_dir / "two_stage.json").read_text())
    assert saved["patch_batch_size"] == B and saved["stages"][0]["num_steps"] == 5
    assert saved["stages"][1]["num_steps"] == S2   # the token stage is the same under both rules
