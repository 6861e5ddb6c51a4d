"""Sharding: 1 device vs 8 fake devices (2,2,2) give the same losses; 2 processes × 4 devices train,
checkpoint and resume as one 8-device mesh."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.xla_env import subprocess_env
from tests.support.trainer_runs import REPO, losses, train_cmd

pytestmark = pytest.mark.slow

EQUIVALENCE_SCRIPT = r'''
import json, sys
import jax
jax.config.update("jax_num_cpu_devices", 8)
from tests.support.synthetic import SyntheticData
from patch_training.checkpointing import CheckpointConfig
from patch_training.partitioning import make_mesh
from patch_training.model import ModelConfig
from patch_training.trainer import Trainer, TrainerConfig

cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
out = {}
for name, shape, devices in [("one", (1, 1, 1), jax.devices()[:1]), ("eight", (2, 2, 2), jax.devices())]:
    mesh = make_mesh(shape, devices)
    t = Trainer(f"{sys.argv[1]}/{name}", cfg,
                TrainerConfig(num_steps=6, batch_size=8, sequence_length=32, log_every=1, num_microbatches=2,
                              plot=False),
                SyntheticData(), SyntheticData(seed=7), mesh=mesh, console=False,
                checkpoint_config=CheckpointConfig(save_every_steps=None, save_every_seconds=None))
    result = t.run()
    params = jax.tree_util.tree_leaves(result.state.params)
    out[name] = {"eval": result.eval_metrics["loss"],
                 "shardings": sorted({str(p.sharding.spec) for p in params}),
                 "param_sum": float(sum(abs(p).sum() for p in params))}
print("RESULT " + json.dumps(out))
'''


def test_one_device_and_eight_fake_devices_give_same_losses(tmp_path: Path):
    r = subprocess.run([sys.executable, "-c", EQUIVALENCE_SCRIPT, str(tmp_path)],
                       cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT ", 1)[1])
    one, eight = losses(tmp_path / "one"), losses(tmp_path / "eight")
    assert [s for s, _ in one] == [s for s, _ in eight] == list(range(1, 7))
    for (_, a), (_, b) in zip(one, eight):
        assert a == pytest.approx(b, rel=2e-5)
    assert one[-1][1] < one[0][1]  # it actually trained
    assert out["one"]["eval"] == pytest.approx(out["eight"]["eval"], rel=2e-5)
    assert out["one"]["param_sum"] == pytest.approx(out["eight"]["param_sum"], rel=1e-5)
    # The 8-device run really sharded: FSDP and tensor axes appear in parameter shardings.
    assert any("fsdp" in s for s in out["eight"]["shardings"])
    assert any("tensor" in s for s in out["eight"]["shardings"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two_processes(run_dir: Path, steps: int) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for pid in range(2):
        cmd = train_cmd(run_dir, f"TRAIN_STEPS={steps}", extra_args=(
            "--gin_file=configs/mesh/cpu_fake_8.gin", "--num_cpu_devices=4", "--cpu_collectives=gloo",
            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"))
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_two_processes_four_devices_each_train_checkpoint_and_resume(tmp_path: Path):
    run_dir = tmp_path / "mh"
    first = _launch_two_processes(run_dir, 6)
    for r in first:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "(8 devices)" in first[0].stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["3", "6"]

    second = _launch_two_processes(run_dir, 9)
    for r in second:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from checkpoint step 6" in second[0].stderr
    steps = [s for s, _ in losses(run_dir)]
    assert steps == list(range(1, 10))  # process 0 alone writes metrics, each step once
    assert "9" in {p.name for p in (run_dir / "checkpoints").iterdir()}
