"""Helpers for checkpoint tests: a small params/optimizer pair and launching worker subprocesses."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tests.support import xla_env

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = REPO_ROOT / "tests" / "checkpointing" / "ckpt_workers.py"


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"dense": {"kernel": jnp.asarray(rng.standard_normal((16, 8)), jnp.float32),
                      "bias": jnp.asarray(rng.standard_normal((8,)), jnp.float32)},
            "norm": {"scale": jnp.ones((16,), jnp.float32)}}


def make_tx() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, b1=0.9, b2=0.95))


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def trained_state(steps: int = 3, seed: int = 0):
    """Params and an AdamW state with non-trivial moments (so a restore mix-up would show)."""
    params, tx = make_params(seed), make_tx()
    opt = tx.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1)), params)
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
    return params, opt


def trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)))


def worker_env(devices: int = 1) -> dict:
    env = xla_env.subprocess_env(devices)
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(var, None)
    return env


def start_worker(*args: str, devices: int = 1, env_extra: dict | None = None) -> subprocess.Popen:
    env = worker_env(devices)
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
