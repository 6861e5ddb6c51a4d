"""A two-stage run reads `trainer.TrainerConfig` from gin (issue 8, item 1), and a binding that no run
reads is refused instead of passing silently."""
from __future__ import annotations

import json

import gin
import pytest

from patch_training import stage_data as sd
from patch_training import two_stage_training as two_stage
from patch_training.main.two_stage import parse_experiment_gin
from patch_training.errors import UserError, one_line
from patch_training.gin_utils import call_configured
from tests.support.stream import EvalRows, StreamRows

T, K, B = 16, 4, 8
# The real run file through a real experiment, shrunk to the micro model and synthetic rows.
BASE = ["MODEL_DIR = '{run_dir}'", "TOKEN_BUDGET = 768", f"BATCH_SIZE = {B}", f"SEQUENCE_LENGTH = {T}",
        f"PATCH_SIZE = {K}", "PATCH_FRACTION = '2/3'", "DATA_MAX_TOKENS = None",
        "model.ModelConfig.vocab_size = 384", "model.ModelConfig.hidden_size = 32",
        "model.ModelConfig.intermediate_size = 64", "model.ModelConfig.num_layers = 1",
        "model.ModelConfig.max_seq_len = 64", "vocab.get_vocabulary.kind = 'byte'",
        "optimizer.OptimizerConfig.warmup_steps = 1", "checkpointing.CheckpointConfig.save_every_steps = 100"]


@pytest.fixture
def synthetic_data(monkeypatch):
    """Replace the corpus and validation sets with the synthetic stream (no cache building)."""
    def fake_make_dataset(*, sequence_length, patch_size, **_):
        return StreamRows(sequence_length, patch_size, 400 // (sequence_length // T))
    monkeypatch.setattr(two_stage, "make_dataset", fake_make_dataset)
    monkeypatch.setattr(sd, "dataset_rows", lambda ds: ds)
    monkeypatch.setattr(two_stage, "build_eval_sets", lambda *a, **k: {"code": EvalRows(T, 2 * B, seed=5)})
    yield
    gin.clear_config()


def run_experiment(run_dir, *bindings):
    parse_experiment_gin(["experiments/patch/tiny_cpu_patch.gin"],
                                   [b.format(run_dir=run_dir) for b in (*BASE, *bindings)])
    return call_configured(two_stage.run_experiment)


def logged_steps(stage_dir) -> list[int]:
    rows = [json.loads(l) for l in (stage_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [r["step"] for r in rows if "learning_rate" in r]


def test_trainer_config_bindings_take_effect_in_both_stages(tmp_path, synthetic_data):
    # 768 tokens, 128 per step in both stages: stage 1 = 4 steps of B/K = 2 rows x 64 tokens (one row
    # per microbatch), stage 2 = 2 steps of 8 x 16 tokens.
    result = run_experiment(tmp_path / "run", "trainer.TrainerConfig.log_every = 3",
                            "trainer.TrainerConfig.num_microbatches = 2", "trainer.TrainerConfig.eval_batches = 1")
    assert [result.stages[i]["status"] for i in (1, 2)] == ["completed", "completed"]
    # log_every=3 (not the run file's 2, nor the old TwoStageConfig default): step 3 and the last step.
    assert logged_steps(tmp_path / "run" / "stage1_patch_k4") == [3, 4]
    assert logged_steps(tmp_path / "run" / "stage2_token") == [2]
    operative = (tmp_path / "run" / "config.gin").read_text()
    assert "TrainerConfig.num_microbatches = 2" in operative
    # eval_batches=1 caps validation at one batch of B rows (the set has 2 batches of B rows x T tokens).
    evals = json.loads((tmp_path / "run" / "stage2_token" / "eval.json").read_text())["eval"]["code"]
    assert evals["tokens"] <= B * T


@pytest.mark.parametrize("binding, message", [
    ("trainer.TrainerConfig.num_steps = 5", "trainer.TrainerConfig.num_steps=5 has no effect in a two-stage run"),
    ("TRAIN_STEPS = 5", "gin bindings that this run never reads: TRAIN_STEPS"),
    ("train/factory.make_dataset.seed = 3", "never reads: train/patch_training.data.factory.make_dataset.seed"),
])
def test_bindings_a_two_stage_run_would_ignore_are_refused(tmp_path, synthetic_data, binding, message):
    with pytest.raises(UserError) as e:
        run_experiment(tmp_path / "run", binding)
    assert message in one_line(e.value)  # the one line `run_cli` prints
    assert not (tmp_path / "run" / "stage1_patch_k4").exists()
