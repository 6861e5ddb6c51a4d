"""Shared helpers for trainer tests: run the train CLI in a subprocess, read a run's results."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.support import xla_env

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tests" / "trainer" / "run_synthetic.py"
SYNTHETIC_GIN = REPO / "tests" / "trainer" / "synthetic.gin"
STORE_GIN = REPO / "tests" / "trainer" / "store.gin"   # the corpus from a row store (needs STORE_* macros)


def train_cmd(run_dir: Path, *bindings: str, extra_args: tuple[str, ...] = (),
              gin_file: Path = SYNTHETIC_GIN) -> list[str]:
    return [sys.executable, str(RUNNER), f"--gin_file={gin_file}", f"--gin.MODEL_DIR='{run_dir}'",
            *[f"--gin.{b}" for b in bindings], *extra_args]


def run_train(run_dir: Path, *bindings: str, extra_args: tuple[str, ...] = (), timeout: float = 180,
              gin_file: Path = SYNTHETIC_GIN, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(run_dir, *bindings, extra_args=extra_args, gin_file=gin_file), cwd=REPO,
                          env=xla_env.subprocess_env(**env), capture_output=True, text=True, timeout=timeout)


def losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def final_params(run_dir: Path, step: int) -> dict[str, np.ndarray]:
    import jax
    import orbax.checkpoint as ocp
    tree = ocp.StandardCheckpointer().restore(run_dir / "checkpoints" / str(step) / "params")
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def error_lines(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if l.startswith("error:")]
