"""Multi-process plumbing: start the JAX distributed runtime, and a few cross-host helpers.

`initialize_distributed` takes the coordinator address, process count and process id from explicit
arguments (flags) first, then from the standard environment (`JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, `JAX_LOCAL_DEVICE_IDS`). On a TPU pod slice or under SLURM
(and other clusters JAX can detect) nothing needs to be given: JAX's own auto-detection fills in
the values. With none of that, it is a no-op and the run is single-process.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from patch_training.errors import UserError

log = logging.getLogger(__name__)

_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
_ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
_ENV_PROCESS_ID = "JAX_PROCESS_ID"
_ENV_LOCAL_DEVICE_IDS = "JAX_LOCAL_DEVICE_IDS"


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not an integer") from None


def _auto_detectable_cluster() -> str | None:
    """Name of a cluster whose environment JAX can read on its own, or None."""
    try:
        from jax._src import clusters
        for env in clusters.ClusterEnv._cluster_types:  # noqa: SLF001 - JAX's own detection list
            if env.is_env_present():
                return env.__name__
    except Exception:  # a private API: fall back to the obvious markers
        pass
    if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return "SlurmCluster"
    if os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") >= 1:
        return "GkeTpuCluster"
    return None


def is_distributed_initialized() -> bool:
    from jax._src import distributed
    return distributed.global_state.client is not None


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None,
                           *, initialization_timeout: int = 300) -> bool:
    """Start `jax.distributed` if this is a multi-process run; return True if it was started.

    Must run before any other JAX call that touches devices. Safe to call twice.
    """
    if is_distributed_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get(_ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(_ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(_ENV_PROCESS_ID)
    if local_device_ids is None and os.environ.get(_ENV_LOCAL_DEVICE_IDS):
        local_device_ids = [int(x) for x in os.environ[_ENV_LOCAL_DEVICE_IDS].split(",")]

    explicit = (coordinator_address, num_processes, process_id)
    if all(v is None for v in explicit):
        cluster = _auto_detectable_cluster()
        if cluster is None:
            return False  # single process: nothing to start
        log.info("multihost: auto-detected %s; calling jax.distributed.initialize()", cluster)
        jax.distributed.initialize(initialization_timeout=initialization_timeout)
        return True
    if num_processes == 1 and coordinator_address is None:
        return False
    missing = [name for name, v in zip(("coordinator_address", "num_processes", "process_id"), explicit)
               if v is None]
    if missing and _auto_detectable_cluster() is None:
        raise UserError(
            f"multihost: {', '.join(missing)} not set (give the flag or set {_ENV_COORDINATOR}, "
            f"{_ENV_NUM_PROCESSES}, {_ENV_PROCESS_ID})")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise UserError(f"multihost: process_id={process_id} is outside [0, {num_processes})")
    log.info("multihost: connecting process %s/%s to %s", process_id, num_processes, coordinator_address)
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids,
                               initialization_timeout=initialization_timeout)
    return True


def use_gloo_cpu_collectives() -> None:
    """CPU-only multi-process runs need a collectives backend; call before `initialize_distributed`."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """True on the one process that writes run-level files (metrics, configs, plots)."""
    return jax.process_index() == 0


def say_primary(text: str) -> None:
    """A progress line on stderr, from the primary process only (one line per run, not one per host)."""
    if is_primary():
        print(text, file=sys.stderr, flush=True)


def sync_global_devices(name: str) -> None:
    """Barrier across all processes (no-op for one process). `name` must match on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def broadcast_from_primary(value: Any) -> Any:
    """Every process gets process 0's `value` (a pytree of numbers/arrays)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(value))


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is True on at least one (a collective: call it everywhere)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.asarray(bool(flag), np.int32))
    return bool(np.asarray(flags).any())


def gather_host_metrics(metrics: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Collect host-local scalars from all processes: {name: array[process_count]}.

    Every process must pass the same keys. Use it for host-side numbers (input-pipeline time,
    host memory, examples read) that are not already global jax arrays.
    """
    names = sorted(metrics)
    local = np.asarray([float(metrics[k]) for k in names], np.float32)
    if jax.process_count() == 1:
        stacked = local[None, :]
    else:
        from jax.experimental import multihost_utils
        stacked = np.asarray(multihost_utils.process_allgather(local))
        stacked = stacked.reshape(jax.process_count(), len(names))
    return {k: stacked[:, i] for i, k in enumerate(names)}


def summarize_host_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """`gather_host_metrics` reduced to `<name>/mean`, `<name>/min`, `<name>/max` for logging."""
    out = {}
    for k, v in gather_host_metrics(metrics).items():
        out[f"{k}/mean"], out[f"{k}/min"], out[f"{k}/max"] = float(v.mean()), float(v.min()), float(v.max())
    return out
