"""Save/restore round trips, partial checkpoints that must never load, corruption and config errors."""
from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.support.checkpoints import abstract, make_params, start_worker, trained_state, trees_equal
from tests.support.kill_moments import kill_seed, noted_on_failure
from patch_training import checkpoint_manifest as manifest_lib
from patch_training.checkpointing import (CheckpointConfig, TrainCheckpointer, key_from_json,
                                          key_to_json)
from patch_training.errors import UserError

FP = {"num_layers": 2, "hidden_size": 16, "vocab": "byte"}


def _save_steps(run_dir, steps, config=None, fingerprint=FP):
    states = {}
    with TrainCheckpointer(run_dir, config or CheckpointConfig(keep=None), fingerprint=fingerprint) as ckpt:
        for step in steps:
            params, opt = trained_state(steps=step)
            states[step] = (params, opt)
            assert ckpt.save(step, params, opt, rng=jax.random.PRNGKey(step),
                             data_state={"epoch": 0, "position": step * 8}, force=True)
    return states


def _largest_file(step_dir: Path) -> Path:
    files = [p for p in step_dir.rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    return max(files, key=lambda p: p.stat().st_size)


def test_round_trip_is_bit_exact_with_rng_and_data_state(run_dir):
    states = _save_steps(run_dir, [2, 4])
    params, opt = states[4]
    ckpt = TrainCheckpointer(run_dir, fingerprint=FP)
    restored = ckpt.restore_latest(abstract(params), abstract(opt))
    ckpt.close()
    assert restored.step == 4
    assert trees_equal(restored.params, params) and trees_equal(restored.opt_state, opt)
    np.testing.assert_array_equal(restored.rng, np.asarray(jax.random.PRNGKey(4)))
    assert restored.data_state == {"epoch": 0, "position": 32}
    assert restored.meta["fingerprint"] == FP
    # The params item is a plain StandardSave tree: readable without this module.
    import orbax.checkpoint as ocp
    direct = ocp.StandardCheckpointer().restore(run_dir / "checkpoints" / "4" / "params", abstract(params))
    assert trees_equal(direct, params)


def test_typed_keys_round_trip_through_json():
    key = jax.random.key(3, impl="threefry2x32")
    back = key_from_json(json.loads(json.dumps(key_to_json(key))))
    assert jax.random.key_impl(back) == jax.random.key_impl(key)
    np.testing.assert_array_equal(jax.random.key_data(back), jax.random.key_data(key))


def test_keep_n_and_params_only_restore(run_dir):
    _save_steps(run_dir, [1, 2, 3, 4], config=CheckpointConfig(keep=2))
    ckpt = TrainCheckpointer(run_dir, fingerprint=FP)
    assert ckpt.all_steps() == [3, 4]
    params, _ = trained_state(steps=3)
    restored = ckpt.restore(3, abstract(params))
    ckpt.close()
    assert restored.opt_state is None and trees_equal(restored.params, params)


def test_saved_arrays_survive_donation_right_after_async_save(run_dir):
    params = make_params()
    expected = jax.tree.map(np.asarray, params)
    with TrainCheckpointer(run_dir) as ckpt:
        ckpt.save(1, params, force=True)
        jax.tree.map(lambda x: x.delete(), params)   # what a donating train step does
    restored = TrainCheckpointer(run_dir).restore_latest(abstract(expected))
    assert trees_equal(restored.params, expected)


@pytest.mark.parametrize("damage", ["no_manifest", "truncated", "file_removed", "no_commit_marker"])
def test_partial_newest_checkpoint_is_never_loaded(run_dir, damage):
    states = _save_steps(run_dir, [1, 2])
    step_dir = run_dir / "checkpoints" / "2"
    if damage == "no_manifest":
        (step_dir / manifest_lib.MANIFEST_NAME).unlink()
    elif damage == "truncated":
        victim = _largest_file(step_dir)
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "file_removed":
        _largest_file(step_dir).unlink()
    else:
        (step_dir / manifest_lib.ORBAX_COMMIT_MARKER).unlink()
    assert manifest_lib.latest_complete_step(run_dir / "checkpoints") == 1

    params, opt = states[1]
    ckpt = TrainCheckpointer(run_dir, fingerprint=FP)
    restored = ckpt.restore_latest(abstract(params), abstract(opt))
    assert restored.step == 1 and trees_equal(restored.params, params)
    # Moved aside, not deleted; the run can then save step 2 again.
    assert [p.name.split(".")[0] for p in (run_dir / "checkpoints_incomplete").iterdir()] == ["2"]
    assert ckpt.save(2, params, opt, force=True)
    ckpt.close()
    assert manifest_lib.complete_steps(run_dir / "checkpoints") == [1, 2]


@pytest.mark.parametrize("when", ["before_manifest", "after_manifest"])
def test_writer_killed_while_committing_leaves_nothing_loadable(run_dir, when):
    proc = start_worker("writer_dies", str(run_dir), when)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err[-2000:])
    ckpt_dir = run_dir / "checkpoints"
    assert manifest_lib.tmp_dirs(ckpt_dir), list(ckpt_dir.iterdir())   # really left half-written
    assert manifest_lib.latest_complete_step(ckpt_dir) == 1
    ckpt = TrainCheckpointer(run_dir, fingerprint={"kind": "worker"})
    restored = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((1000,), np.float32)})
    ckpt.close()
    assert restored.step == 1 and float(restored.params["w"][0]) == 1.0
    assert not manifest_lib.tmp_dirs(ckpt_dir)


def test_sigkill_at_a_random_moment_resumes_from_a_complete_checkpoint(run_dir):
    seed = kill_seed()
    delay = random.Random(seed).uniform(0.0, 0.4)
    with noted_on_failure(f"kill moment: RESUME_KILL_SEED={seed} replays it ({delay:.3f} s after step 2 "
                           "was saved)"):
        proc = start_worker("writer_loop", str(run_dir))
        seen = 0
        while seen < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-2000:]
            if line.startswith("saved"):
                seen = int(line.split()[1])
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=30)
        ckpt = TrainCheckpointer(run_dir, fingerprint={"kind": "worker"})
        step = ckpt.latest_step()
        assert step is not None and step >= 1
        targets = {"w": jax.ShapeDtypeStruct((4_000_000,), np.float32),
                   "step": jax.ShapeDtypeStruct((), np.int32)}
        restored = ckpt.restore_latest(targets)
        ckpt.close()
        assert restored.step == step == int(restored.params["step"])
        assert np.all(np.asarray(restored.params["w"]) == float(step))
        assert list(restored.rng) == [0, step]


def test_corrupt_newest_checkpoint_is_one_clear_error_and_nothing_is_deleted(run_dir):
    states = _save_steps(run_dir, [1, 2])
    victim = _largest_file(run_dir / "checkpoints" / "2")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF                          # same size, different bytes
    victim.write_bytes(bytes(data))
    params, opt = states[2]
    ckpt = TrainCheckpointer(run_dir, fingerprint=FP)
    with pytest.raises(UserError) as err:
        ckpt.restore_latest(abstract(params), abstract(opt))
    message = str(err.value)
    assert "\n" not in message
    assert str(run_dir / "checkpoints" / "2") in message and "step 2" in message
    assert "restore_step=1" in message
    assert manifest_lib.complete_steps(run_dir / "checkpoints") == [1, 2]
    ckpt.close()

    # The hinted recovery works and keeps the bad step (moved aside, not deleted).
    ckpt = TrainCheckpointer(run_dir, CheckpointConfig(restore_step=1), fingerprint=FP)
    restored = ckpt.restore_latest(abstract(params), abstract(opt))
    ckpt.close()
    assert restored.step == 1 and trees_equal(restored.params, states[1][0])
    assert [p.name.split(".")[0] for p in (run_dir / "checkpoints_superseded").iterdir()] == ["2"]


def test_corruption_without_checksums_still_fails_cleanly(run_dir):
    _save_steps(run_dir, [1], config=CheckpointConfig(verify_checksums=False))
    step_dir = run_dir / "checkpoints" / "1"
    for path in (step_dir / "params").rglob("*"):
        if path.is_file() and "/d/" in path.as_posix():
            path.write_bytes(b"\0" * path.stat().st_size)  # garbage of the right size
    params, _ = trained_state(steps=1)
    ckpt = TrainCheckpointer(run_dir, CheckpointConfig(verify_checksums=False), fingerprint=FP)
    with pytest.raises(UserError, match=r"step 1\) is corrupt.*no older complete step"):
        ckpt.restore_latest(abstract(params))
    ckpt.close()


def test_incompatible_config_names_the_differing_fields(run_dir):
    states = _save_steps(run_dir, [1])
    params, opt = states[1]
    changed = dict(FP, num_layers=4, hidden_size=32)
    ckpt = TrainCheckpointer(run_dir, fingerprint=changed)
    with pytest.raises(UserError) as err:
        ckpt.restore_latest(abstract(params), abstract(opt))
    message = str(err.value)
    assert "num_layers (saved 2, now 4)" in message and "hidden_size (saved 16, now 32)" in message
    assert "vocab" not in message and "\n" not in message
    ckpt.close()


def test_shape_mismatch_without_fingerprint_names_the_arrays(run_dir):
    _save_steps(run_dir, [1], fingerprint=None)
    wrong = abstract(make_params())
    wrong["dense"]["kernel"] = jax.ShapeDtypeStruct((16, 9), np.float32)
    ckpt = TrainCheckpointer(run_dir)
    with pytest.raises(UserError, match=r"params/dense/kernel \(saved \(16, 8\), now \(16, 9\)\)"):
        ckpt.restore_latest(wrong)
    ckpt.close()


def test_restore_step_that_does_not_exist_lists_the_choices(run_dir):
    _save_steps(run_dir, [1, 2])
    ckpt = TrainCheckpointer(run_dir, CheckpointConfig(restore_step=7), fingerprint=FP)
    with pytest.raises(UserError, match=r"restore_step=7 .*complete steps: \[1, 2\]"):
        ckpt.restore_latest(abstract(make_params()))
    ckpt.close()


def test_synchronous_saving_and_keep_every_steps(run_dir):
    config = CheckpointConfig(async_save=False, keep=1, keep_every_steps=2)
    _save_steps(run_dir, [1, 2, 3, 4, 5], config=config)
    # Newest one kept, plus every multiple of 2; each of them complete (manifest written).
    assert manifest_lib.complete_steps(run_dir / "checkpoints") == [2, 4, 5]
    params, opt = trained_state(steps=5)
    ckpt = TrainCheckpointer(run_dir, config, fingerprint=FP)
    restored = ckpt.restore_latest(abstract(params), abstract(opt))
    ckpt.close()
    assert restored.step == 5 and trees_equal(restored.opt_state, opt)


def test_step_being_written_is_not_reported_complete(run_dir):
    ckpt = TrainCheckpointer(run_dir)
    params = {"w": jax.numpy.zeros((2_000_000,), np.float32)}
    ckpt.save(1, params, force=True)
    ckpt.wait()
    ckpt.save(2, params, force=True)
    in_flight = ckpt._manager.is_saving_in_progress()
    steps_during = ckpt.all_steps()
    ckpt.wait()
    assert ckpt.all_steps() == [1, 2]
    assert steps_during == ([1] if in_flight else [1, 2])
    ckpt.close()


def test_relative_run_dir_saves_and_restores(tmp_path, monkeypatch):
    """A run dir given relative to the working directory (as `make demo` does) must work: orbax
    itself only accepts absolute local paths."""
    import jax.numpy as jnp
    from patch_training.checkpointing import CheckpointConfig, TrainCheckpointer
    monkeypatch.chdir(tmp_path)
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    opt_state = {"mu": jnp.ones((2, 3))}
    with TrainCheckpointer("runs/rel", CheckpointConfig(async_save=False)) as ckpt:
        assert ckpt.save(1, params, opt_state, force=True)
    with TrainCheckpointer("runs/rel", CheckpointConfig()) as ckpt:
        restored = ckpt.restore_latest(params, opt_state)
    assert restored is not None and restored.step == 1
    assert (tmp_path / "runs" / "rel" / "checkpoints" / "1").is_dir()
    assert jnp.array_equal(restored.params["w"], params["w"])
    assert jnp.array_equal(restored.opt_state["mu"], opt_state["mu"])
