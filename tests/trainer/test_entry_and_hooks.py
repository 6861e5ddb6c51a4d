"""The one training entry (`training.train`) and the trainer's open hooks (`add_hook(fn, every=N)`)."""
from __future__ import annotations

import numpy as np
import pytest

from patch_training.checkpointing import CheckpointConfig
from patch_training.errors import UserError
from patch_training.model import ModelConfig
from patch_training.trainer import TrainerConfig
from patch_training.training import Stage, hook, train
from tests.support.synthetic import SyntheticData

MODEL = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                    num_kv_heads=1, max_seq_len=32, scan_layers=False)
CKPT = CheckpointConfig(save_every_steps=2, save_every_seconds=None, keep=10)


def stage(num_steps: int) -> Stage:
    cfg = TrainerConfig(num_steps=num_steps, batch_size=4, sequence_length=32, log_every=100, plot=False,
                        eval_batches=1)
    return Stage(cfg, SyntheticData(), SyntheticData(seed=9))


def run(run_dir, num_steps: int, hooks=(), init_from=None):
    # A vocabulary spec makes the run dir a checkpoint other runs can open (vocab.json).
    return train(model_dir=str(run_dir), model_config=MODEL, stages=[stage(num_steps)], hooks=hooks,
                 init_from=init_from, vocab={"kind": "byte"}, checkpoint_config=CKPT, mesh_shape=(1, 1, 1))[-1]


def test_hooks_run_every_n_steps_at_start_only_when_fresh_and_at_the_end(tmp_path):
    seen = []

    def record(info):
        seen.append((info.event, info.step, sorted(info.eval_by_set)))
        return f"{info.event}@{info.step}"

    hooks = [hook(record, every=2, at_start=True, at_end=True, name="rec")]
    result = run(tmp_path / "run", 5, hooks)
    # every 2 steps; at the start (fresh); once at the end, after the final validation
    assert seen == [("start", 0, []), ("step", 2, []), ("step", 4, []), ("end", 5, [""])]
    assert result.hook_results == {"rec": "end@5"}
    assert (tmp_path / "run" / "config.gin").is_file()

    seen.clear()
    result = run(tmp_path / "run", 7, hooks)     # resumes from step 5: no start hook
    assert seen == [("step", 6, []), ("end", 7, [""])]


def test_init_from_starts_from_that_checkpoints_params_and_start_hook_can_evaluate(tmp_path):
    import jax
    first = run(tmp_path / "a", 2, [hook(lambda info: jax.device_get(info.params), name="final")])
    captured = {}

    def at_start(info):
        captured["params"] = jax.device_get(info.params)   # the next step donates the live state
        captured["before"] = info.trainer.evaluate(info.params, log=False)

    run(tmp_path / "b", 1, [hook(at_start, at_start=True, at_end=False)], init_from=str(tmp_path / "a"))
    a = jax.tree_util.tree_leaves(first.hook_results["final"])
    b = jax.tree_util.tree_leaves(jax.device_get(captured["params"]))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    # the trainer's own eval step on those params gives run a's final validation loss
    assert captured["before"][""]["loss"] == pytest.approx(first.eval_metrics["loss"], rel=1e-6)


def test_empty_model_dir_and_bad_hook_schedule_are_one_line(tmp_path):
    with pytest.raises(UserError, match="MODEL_DIR is empty"):
        train(model_dir="", model_config=MODEL, stages=[stage(1)])
    with pytest.raises(UserError, match="every=-1"):
        hook(lambda info: None, every=-1)
