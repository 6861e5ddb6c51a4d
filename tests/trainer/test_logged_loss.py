"""The train loss logged every N steps is the mean over those N steps (issue 9, item 5)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from patch_training.checkpointing import CheckpointConfig
from patch_training.partitioning import make_mesh
from patch_training.model import ModelConfig
from patch_training.trainer import Trainer, TrainerConfig
from tests.support.synthetic import SyntheticData

MODEL = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                    num_kv_heads=1, max_seq_len=32, scan_layers=False)


def logged(run_dir, log_every: int) -> dict[int, float]:
    cfg = TrainerConfig(num_steps=7, batch_size=4, sequence_length=32, log_every=log_every, plot=False)
    Trainer(run_dir, MODEL, cfg, SyntheticData(), mesh=make_mesh((1, 1, 1)), console=False,
            checkpoint_config=CheckpointConfig(save_every_steps=100, save_every_seconds=None)).run()
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "learning_rate" in r}


def test_logged_train_loss_is_the_mean_since_the_previous_log(tmp_path):
    every_step = logged(tmp_path / "every", 1)
    every_third = logged(tmp_path / "third", 3)
    assert sorted(every_step) == list(range(1, 8)) and sorted(every_third) == [3, 6, 7]
    per_step = np.array([every_step[s] for s in range(1, 8)])
    assert len(set(per_step.tolist())) == 7  # the losses differ, so a single step's value cannot pass
    assert every_third[3] == pytest.approx(per_step[0:3].mean(), rel=1e-6)
    assert every_third[6] == pytest.approx(per_step[3:6].mean(), rel=1e-6)
    assert every_third[7] == pytest.approx(per_step[6], rel=1e-6)   # the last, partial window
