"""Two local JAX processes x 4 CPU devices: save a globally sharded array, restore on another mesh."""
from __future__ import annotations

import signal
import socket

import jax
import numpy as np
import pytest

from tests.support.checkpoints import start_worker
from patch_training import checkpoint_manifest as manifest_lib
from patch_training import multihost
from patch_training.checkpointing import TrainCheckpointer
from patch_training.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch_pair(mode: str, run_dir, via_env: bool = False) -> list[str]:
    port = str(_free_port())
    env = lambda pid: ({"JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",  # noqa: E731
                        "JAX_PROCESS_ID": str(pid)} if via_env else None)
    procs = [start_worker(mode, str(run_dir), str(pid), port, devices=4, env_extra=env(pid))
             for pid in (0, 1)]
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=150)
        except Exception:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, f"{mode} process failed:\n{err[-3000:]}"
        outs.append(out)
    return outs


def test_two_process_save_then_two_process_restore_on_a_different_mesh(run_dir):
    outs = _launch_pair("multihost_save", run_dir)
    assert "saved process 0 primary=True" in outs[0] and "saved process 1 primary=False" in outs[1]
    outs = _launch_pair("multihost_restore", run_dir, via_env=True)
    assert "restored process 0" in outs[0] and "restored process 1" in outs[1]

    # And the same checkpoint restores in this single-device process.
    ckpt = TrainCheckpointer(run_dir, fingerprint={"kind": "worker"})
    restored = ckpt.restore_latest({"a": jax.ShapeDtypeStruct((16, 8), np.float32),
                                    "b": jax.ShapeDtypeStruct((8,), np.float32)})
    ckpt.close()
    np.testing.assert_array_equal(np.asarray(restored.params["a"]),
                                  np.arange(128, dtype=np.float32).reshape(16, 8))
    assert restored.meta["process_count"] == 2


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(run_dir):
    port = str(_free_port())
    procs = [start_worker("multihost_preempt", str(run_dir), str(pid), port, devices=4) for pid in (0, 1)]
    try:
        while True:  # wait until process 1 is training
            line = procs[1].stdout.readline()
            assert line, procs[1].stderr.read()[-3000:]
            if line.startswith("step") and int(line.split()[1]) >= 3:
                break
        procs[1].send_signal(signal.SIGTERM)
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stops = []
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-3000:]
        stops += [int(l.split()[2]) for l in out.splitlines() if l.startswith("preempted at")]
    assert len(stops) == 2 and stops[0] == stops[1], stops
    assert manifest_lib.latest_complete_step(run_dir / "checkpoints") == stops[0]
    ckpt = TrainCheckpointer(run_dir, fingerprint={"kind": "worker"})
    restored = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((8,), np.float32)})
    ckpt.close()
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.full((8,), float(stops[0])))


def test_initialize_is_a_noop_for_a_single_process(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(multihost, "_auto_detectable_cluster", lambda: None)
    assert multihost.initialize_distributed() is False
    assert multihost.initialize_distributed(num_processes=1) is False
    assert multihost.is_primary()
    stats = multihost.summarize_host_metrics({"input_s": 0.5})
    assert stats == {"input_s/mean": 0.5, "input_s/min": 0.5, "input_s/max": 0.5}


@pytest.mark.parametrize("env,match", [
    ({"JAX_COORDINATOR_ADDRESS": "localhost:1234", "JAX_NUM_PROCESSES": "2"}, "process_id not set"),
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     r"process_id=2 is outside \[0, 2\)"),
])
def test_bad_distributed_settings_are_user_errors(monkeypatch, env, match):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(multihost, "_auto_detectable_cluster", lambda: None)
    with pytest.raises(UserError, match=match):
        multihost.initialize_distributed()
