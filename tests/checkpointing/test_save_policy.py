"""The save decision is a pure function of (step, injected clock)."""
import pytest

from patch_training.checkpoint_policy import SavePolicy
from patch_training.checkpointing import CheckpointConfig, TrainCheckpointer
from tests.support.checkpoints import make_params


def test_step_policy_saves_on_multiples_only():
    policy = SavePolicy(every_steps=5)
    policy.start(None, now=0.0)
    assert [s for s in range(1, 21) if policy.should_save(s, now=0.0)] == [5, 10, 15, 20]


def test_time_policy_uses_the_injected_clock_and_restarts_after_each_save():
    policy = SavePolicy(every_seconds=60.0)
    policy.start(None, now=100.0)
    assert not policy.should_save(1, now=159.9)
    assert policy.should_save(1, now=160.0)
    policy.record_save(1, now=160.0)
    assert not policy.should_save(2, now=219.0)
    assert policy.should_save(3, now=220.0)


def test_combined_policy_and_no_resave_of_restored_step():
    policy = SavePolicy(every_steps=10, every_seconds=30.0)
    policy.start(10, now=0.0)                  # resumed from step 10
    assert not policy.should_save(10, now=1000.0)
    assert policy.should_save(11, now=30.0)    # time fires
    assert not policy.should_save(11, now=29.0)
    assert policy.should_save(20, now=1.0)     # step fires


@pytest.mark.parametrize("kwargs", [dict(every_steps=0), dict(every_seconds=-1.0)])
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        SavePolicy(**kwargs)


def test_checkpointer_time_policy_with_fake_clock(run_dir):
    now = [0.0]
    ckpt = TrainCheckpointer(run_dir, CheckpointConfig(save_every_steps=None, save_every_seconds=10.0),
                             clock=lambda: now[0])
    params = make_params()
    saved = []
    for step in range(1, 8):
        now[0] = step * 4.0                    # 4 s per step -> a save every 3rd step
        if ckpt.save(step, params):
            saved.append(step)
    ckpt.close()
    assert saved == [3, 6]
    assert ckpt.all_steps() == [3, 6]
