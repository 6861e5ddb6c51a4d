"""End-to-end trainer behaviour: NaN stop, exact resume after SIGKILL (also on the row store, killed while its
read-ahead thread is mid-read), bad input on the CLI."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.kill_moments import kill_seed, noted_on_failure
from tests.support.slow_reads import STALLED
from tests.support.xla_env import subprocess_env
from tests.support.trainer_runs import REPO, STORE_GIN, error_lines, final_params, losses, run_train, train_cmd

pytestmark = pytest.mark.slow


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path: Path):
    from patch_training.checkpoint_manifest import complete_steps
    from patch_training.checkpointing import CheckpointConfig
    from patch_training.partitioning import make_mesh
    from patch_training.model import ModelConfig
    from patch_training.trainer import Trainer, TrainerConfig, TrainingDiverged
    from tests.support.synthetic import SyntheticData

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2)
    trainer = Trainer(tmp_path, cfg, TrainerConfig(num_steps=8, batch_size=8, sequence_length=32, log_every=100),
                      SyntheticData(nan_at_step=4), mesh=make_mesh((1, 1, 1)), console=False,
                      checkpoint_config=CheckpointConfig(save_every_steps=2, save_every_seconds=None))
    with pytest.raises(TrainingDiverged) as e:
        trainer.run()
    msg = str(e.value)
    assert "\n" not in msg and "at step 5" in msg and "last good checkpoint is step 4" in msg
    assert complete_steps(tmp_path / "checkpoints") == [2, 4]


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    path = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.stderr.read()[-2000:]}")
        if path.exists() and any(f'"step": {step},' in l for l in path.read_text().splitlines()):
            return
        time.sleep(0.01)
    raise AssertionError(f"step {step} not reached in {timeout}s")


STEPS = 14
BINDINGS = (f"TRAIN_STEPS={STEPS}", "train/testing.SyntheticData.delay_s=0.1")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One uninterrupted run (checkpoints every 3 steps, keep 2): the reference for several tests."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    result = run_train(ref, *BINDINGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return ref


def _start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(run_dir, *BINDINGS), cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_then_sigkill_then_resume_is_bit_identical(tmp_path: Path, finished_run: Path):
    """SIGTERM (preemption) saves and exits cleanly; SIGKILL at a random later step loses only
    unsaved work; the finished run equals the uninterrupted one bit for bit."""
    steps, bindings, ref = STEPS, BINDINGS, finished_run
    rng = random.Random(os.urandom(8))
    term_step = rng.randint(2, 4)
    killed = tmp_path / "killed"

    proc = _start(killed)
    _wait_for_step(killed, term_step, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "preempted at step" in out
    stopped = int(out.split("preempted at step ")[1].split(";")[0])
    assert stopped <= steps - 4 and (killed / "checkpoints" / str(stopped)).is_dir()
    kill_step = rng.randint(stopped + 2, steps - 2)
    print(f"SIGTERM at step {term_step} (stopped at {stopped}), SIGKILL at step {kill_step}")

    proc = _start(killed)
    try:
        _wait_for_step(killed, kill_step, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert losses(killed)[-1][0] < steps  # it really died mid-run

    resumed = run_train(killed, *bindings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint step" in resumed.stderr

    _assert_same_run(ref, killed, steps)


def _assert_same_run(ref: Path, got: Path, steps: int) -> None:
    ref_losses, got_losses = losses(ref), losses(got)
    assert [s for s, _ in ref_losses] == list(range(1, steps + 1))
    assert got_losses == ref_losses  # bit-identical floats, each step exactly once
    a, b = final_params(ref, steps), final_params(got, steps)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


STORE_STEPS = 10  # store.gin: checkpoints every 3 steps


def test_sigkill_mid_read_ahead_on_the_row_store_then_resume_is_bit_identical(tmp_path: Path, session_row_store):
    """A run reading its corpus from the row store (ArrayRecord, read 2 steps ahead in a thread) is
    SIGKILLed at a seeded moment while that thread is half-way through a read; the resumed run equals
    the uninterrupted one bit for bit."""
    from patch_training.checkpoint_manifest import latest_complete_step
    store = (f"STORE_ROOT='{session_row_store.root}'", f"STORE_FILES={list(session_row_store.files)!r}",
             f"TRAIN_STEPS={STORE_STEPS}")
    slow = "testing.slow_reads.delay_s=0.05"
    seed = kill_seed()
    rng = random.Random(seed)
    # Prefetched read n holds step n+1's rows (the first step is read directly): stalling it lets the
    # run train steps 1..n+1 at most, so n >= 2 passes the step-3 checkpoint and n <= 7 stops mid-run.
    stall, linger = rng.randint(2, STORE_STEPS - 3), rng.uniform(0.0, 0.3)
    with noted_on_failure(f"kill moment: RESUME_KILL_SEED={seed} replays it (prefetched read {stall} "
                          f"stalled half-read, SIGKILL {linger:.3f} s later)"):
        ref = tmp_path / "ref"
        done = run_train(ref, *store, gin_file=STORE_GIN)
        assert done.returncode == 0, done.stderr[-3000:]

        killed = tmp_path / "killed"
        proc = subprocess.Popen(train_cmd(killed, *store, slow, f"testing.slow_reads.stall_at_read={stall}",
                                          gin_file=STORE_GIN),
                                cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            line = proc.stdout.readline()  # the stall's line, or end of output if the run ended instead
            assert line.startswith(STALLED), (line, proc.stderr.read()[-3000:] if proc.poll() is not None else "")
            time.sleep(linger)  # the main thread trains what was read, saves, or waits on the stalled read
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        trained = losses(killed) if (killed / "metrics.jsonl").exists() else []
        assert not trained or trained[-1][0] <= stall + 1  # the missing rows really held it back
        saved = latest_complete_step(killed / "checkpoints")

        resumed = run_train(killed, *store, slow, gin_file=STORE_GIN)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        if saved is not None:
            assert f"resumed from checkpoint step {saved} " in resumed.stderr
        _assert_same_run(ref, killed, STORE_STEPS)


def test_bad_input_gets_one_line_and_nothing_saved_is_lost(tmp_path: Path, finished_run: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    ckpts = run_dir / "checkpoints"
    saved = sorted(p.name for p in ckpts.iterdir())
    assert saved == ["12", "14"]

    # Resuming with an incompatible model: refused, naming what differs.
    r = run_train(run_dir, "TRAIN_STEPS=20", "model.ModelConfig.hidden_size=48")
    assert r.returncode == 2, r.stderr[-3000:]
    (line,) = error_lines(r.stderr)
    assert "model_config" in line and "hidden_size" in line
    assert sorted(p.name for p in ckpts.iterdir()) == saved

    # A mesh that does not divide the devices.
    r = run_train(tmp_path / "mesh", "partitioning.mesh_shape.data=3")
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert "mesh" in line and "needs 3 devices but 1" in line

    # A batch that the data-parallel size does not divide (8 fake devices, data×fsdp = 4).
    r = run_train(tmp_path / "batch", "BATCH_SIZE=6",
                  extra_args=("--gin_file=configs/mesh/cpu_fake_8.gin", "--num_cpu_devices=8"))
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert "batch size 6" in line and "data-parallel size 4" in line

    # A corrupted checkpoint: one line naming it, and every step directory is still there.
    victim = max((p for p in (ckpts / "14" / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = run_train(run_dir, "TRAIN_STEPS=20")
    assert r.returncode == 2, r.stderr[-3000:]
    (line,) = error_lines(r.stderr)
    assert "corrupt" in line and "14" in line
    assert sorted(p.name for p in ckpts.iterdir()) == saved
    assert "Traceback" not in r.stderr


def test_run_dir_holds_config_model_config_metrics_and_plot(finished_run: Path):
    from patch_training.model import ModelConfig
    from patch_training.trainer import plot_loss_curve
    cfg = ModelConfig.from_dict(json.loads((finished_run / "model_config.json").read_text()))
    assert (cfg.hidden_size, cfg.vocab_size) == (32, 64)
    operative = (finished_run / "config.gin").read_text()
    assert "TRAIN_STEPS = 14" in operative and "hidden_size = 32" in operative
    rows = [json.loads(l) for l in (finished_run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert {"learning_rate", "grad_norm"} <= set(train_rows[0])
    assert {"tokens_per_s", "step_time_s", "mfu_causal_halved"} <= set(train_rows[-1])
    (ev,) = [r for r in rows if "eval/loss" in r]
    assert ev["step"] == 14 and ev["eval/perplexity"] == pytest.approx(np.exp(ev["eval/loss"]))
    assert any((finished_run / "tensorboard").iterdir())
    png = plot_loss_curve(finished_run)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
