"""SIGTERM makes the loop save a final checkpoint at the step it stops at, then exit cleanly."""
from __future__ import annotations

import os
import signal

import jax
import numpy as np

from tests.support.checkpoints import start_worker
from patch_training import checkpoint_manifest as manifest_lib
from patch_training.checkpointing import TrainCheckpointer
from patch_training.preemption import PreemptionWatcher


def test_watcher_sets_flag_on_real_sigterm_and_restores_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with PreemptionWatcher() as watcher:
            assert not watcher.should_stop(1)
            os.kill(os.getpid(), signal.SIGTERM)
            assert watcher.should_stop(2) and watcher.stopped_at_step == 2
            assert watcher.should_stop(3)                 # stays stopped
            assert watcher.received_signal == signal.SIGTERM
        assert seen == []                                 # our handler took it, not the old one
        os.kill(os.getpid(), signal.SIGTERM)              # the old handler is back
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_request_stop_without_a_signal():
    with PreemptionWatcher(signals=()) as watcher:
        assert not watcher.signalled
        watcher.request_stop()
        assert watcher.should_stop(5)


def test_sigterm_to_training_subprocess_saves_final_checkpoint_and_exits_zero(run_dir):
    proc = start_worker("preemptible_loop", str(run_dir))
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-2000:]
        if line.startswith("step") and int(line.split()[1]) >= 3:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    final = [l for l in out.splitlines() if l.startswith("preempted at")]
    assert final, out
    stop_step = int(final[0].split()[2])
    assert final[0].endswith(f"signal {int(signal.SIGTERM)}")
    # The final checkpoint is complete, at exactly the step the loop stopped, with its params.
    assert manifest_lib.latest_complete_step(run_dir / "checkpoints") == stop_step
    ckpt = TrainCheckpointer(run_dir, fingerprint={"kind": "worker"})
    restored = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((8,), np.float32)})
    ckpt.close()
    assert restored.step == stop_step
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.full((8,), float(stop_step)))
