"""Subprocess workers for the checkpoint tests (killed, signalled, or run as 2 JAX processes).

Usage: python ckpt_workers.py MODE RUN_DIR [ARGS...]; see the functions below for the modes.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np


def _ckpt(run_dir, **config):
    from patch_training.checkpointing import CheckpointConfig, TrainCheckpointer
    return TrainCheckpointer(run_dir, CheckpointConfig(**config), fingerprint={"kind": "worker"})


def writer_loop(run_dir: str) -> None:
    """Save ever-increasing steps of a ~16 MB array whose values equal the step, until killed."""
    import jax.numpy as jnp
    ckpt = _ckpt(run_dir, save_every_steps=1, save_every_seconds=None, keep=3)
    step = 0
    while True:
        step += 1
        params = {"w": jnp.full((4_000_000,), float(step), jnp.float32), "step": jnp.asarray(step)}
        ckpt.save(step, params, rng=np.asarray([0, step], np.uint32), force=True)
        print(f"saved {step}", flush=True)


def writer_dies(run_dir: str, when: str) -> None:
    """Save step 1 completely, then SIGKILL ourselves while step 2 is being committed."""
    import jax.numpy as jnp
    from patch_training import checkpoint_manifest
    ckpt = _ckpt(run_dir, save_every_steps=1, save_every_seconds=None, keep=None)
    ckpt.save(1, {"w": jnp.full((1000,), 1.0)}, force=True)
    ckpt.wait()
    original = checkpoint_manifest.write_manifest

    def dying_write_manifest(*args, **kwargs):
        if when == "after_manifest":
            original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint_manifest.write_manifest = dying_write_manifest
    ckpt.save(2, {"w": jnp.full((1000,), 2.0)}, force=True)
    ckpt.wait()
    print("not killed?!", flush=True)


def preemptible_loop(run_dir: str) -> None:
    """A toy training loop: polls the watcher each step, saves and exits cleanly on SIGTERM."""
    import jax.numpy as jnp
    from patch_training.preemption import PreemptionWatcher
    ckpt = _ckpt(run_dir, save_every_steps=1000, save_every_seconds=None)
    params = {"w": jnp.zeros((8,), jnp.float32)}
    with PreemptionWatcher() as watcher:
        for step in range(1, 5000):
            params = {"w": params["w"] + 1.0}           # "train"
            if watcher.should_stop(step):
                ckpt.save(step, params, force=True)
                ckpt.close()
                print(f"preempted at {step} signal {watcher.received_signal}", flush=True)
                return
            ckpt.save(step, params)
            print(f"step {step}", flush=True)
            time.sleep(0.02)
    sys.exit(3)


def _multihost_setup(process_id: str, port: str):
    import jax
    from patch_training import multihost
    multihost.use_gloo_cpu_collectives()
    if os.environ.get("JAX_PROCESS_ID") is not None:   # the standard environment variables
        assert os.environ["JAX_PROCESS_ID"] == process_id
        started = multihost.initialize_distributed()
    else:                                               # explicit values, as from flags
        started = multihost.initialize_distributed(f"localhost:{port}", 2, int(process_id))
    assert started and jax.process_count() == 2 and jax.device_count() == 8, (
        jax.process_count(), jax.device_count())
    return jax, multihost


def _global_params(jax, mesh, specs):
    from jax.sharding import NamedSharding
    full = {"a": np.arange(16 * 8, dtype=np.float32).reshape(16, 8),
            "b": np.arange(8, dtype=np.float32) * -1.0}
    out = {}
    for name, value in full.items():
        sharding = NamedSharding(mesh, specs[name])
        out[name] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
    return full, out


def multihost_save(run_dir: str, process_id: str, port: str) -> None:
    jax, multihost = _multihost_setup(process_id, port)
    from jax.sharding import PartitionSpec as P
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"))
    full, params = _global_params(jax, mesh, {"a": P("data", "fsdp"), "b": P("fsdp")})
    ckpt = _ckpt(run_dir, save_every_steps=5, save_every_seconds=None)
    assert ckpt.should_save(5) and not ckpt.should_save(4)
    # Time policy across hosts: agreed (process 0 decides) only on every 10th step.
    timed = _ckpt(os.path.join(run_dir, "timed"), save_every_steps=None, save_every_seconds=1e-6)
    assert timed.should_save(10) and not timed.should_save(3)
    timed.close()
    ckpt.save(5, params, rng=np.asarray([7, 9], np.uint32), data_state={"seed": 3})
    ckpt.close()
    gathered = multihost.gather_host_metrics({"pid": float(jax.process_index()), "one": 1.0})
    assert list(gathered["pid"]) == [0.0, 1.0] and list(gathered["one"]) == [1.0, 1.0], gathered
    multihost.sync_global_devices("test_done")
    print(f"saved process {jax.process_index()} primary={multihost.is_primary()}", flush=True)


def multihost_restore(run_dir: str, process_id: str, port: str) -> None:
    jax, multihost = _multihost_setup(process_id, port)
    from jax.sharding import NamedSharding, PartitionSpec as P
    # A different mesh and layout than at save time: restore must reshard.
    mesh = jax.make_mesh((4, 2), ("fsdp", "tensor"))
    specs = {"a": P("tensor", "fsdp"), "b": P()}
    full = {"a": np.arange(16 * 8, dtype=np.float32).reshape(16, 8),
            "b": np.arange(8, dtype=np.float32) * -1.0}
    targets = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, specs[k]))
               for k, v in full.items()}
    ckpt = _ckpt(run_dir)
    restored = ckpt.restore_latest(targets)
    assert restored.step == 5 and restored.data_state == {"seed": 3}, restored.meta
    assert list(restored.rng) == [7, 9]
    for k, arr in restored.params.items():
        assert arr.sharding == targets[k].sharding, (k, arr.sharding)
        for shard in arr.addressable_shards:
            np.testing.assert_array_equal(np.asarray(shard.data), full[k][shard.index])
    ckpt.close()
    multihost.sync_global_devices("test_done")
    print(f"restored process {jax.process_index()}", flush=True)


def multihost_preempt(run_dir: str, process_id: str, port: str) -> None:
    """Both processes train in lock-step; the test SIGTERMs only one, both must stop together."""
    jax, multihost = _multihost_setup(process_id, port)
    from jax.sharding import NamedSharding, PartitionSpec as P
    from patch_training.preemption import PreemptionWatcher
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    w = jax.make_array_from_callback((8,), sharding, lambda idx: np.zeros((8,), np.float32)[idx])
    step_fn = jax.jit(lambda w: w + 1.0, out_shardings=sharding)
    ckpt = _ckpt(run_dir, save_every_steps=1000, save_every_seconds=None)
    with PreemptionWatcher(sync_every_steps=2) as watcher:
        for step in range(1, 3000):
            w = step_fn(w)
            if watcher.should_stop(step):
                ckpt.save(step, {"w": w}, force=True)
                ckpt.close()
                print(f"preempted at {step} service={watcher._use_service}", flush=True)
                return
            print(f"step {step}", flush=True)
            time.sleep(0.02)
    sys.exit(3)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    {"writer_loop": writer_loop, "writer_dies": writer_dies, "preemptible_loop": preemptible_loop,
     "multihost_save": multihost_save, "multihost_restore": multihost_restore,
     "multihost_preempt": multihost_preempt}[mode](*rest)
