"""The XLA settings of every test process and of the subprocesses the tests start, in one place.

- Eigen single-threaded (`--xla_cpu_multi_thread_eigen=false`): two xdist workers share the 2 cores.
- LLVM at -O0 (`--xla_backend_optimization_level=0`): the suite's models are tiny, so its XLA time is
  almost all compiling; -O0 compiles about 1.6x faster (tests/decoding/test_decode_engine.py cold: 54 s
  -> 34 s) and the programs still compute the same values (no fast-math either way). Benchmarks and
  real runs never see these flags.
- One persistent compilation cache per checkout (`.cache/jax-test-compilations`) for all of them.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Every token must be a `--flag`: XLA stops reading XLA_FLAGS at the first bare word, silently (a stray
# `intra_op_parallelism_threads=1` here once switched off every flag after it).
TEST_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0"
COMPILE_CACHE = REPO / ".cache" / "jax-test-compilations"


def xla_flags(devices: int | None = None) -> str:
    """The test XLA_FLAGS, with `devices` fake CPU devices when given."""
    return (f"--xla_force_host_platform_device_count={devices} " if devices else "") + TEST_XLA_FLAGS


def subprocess_env(devices: int | None = None, **extra: str) -> dict[str, str]:
    """os.environ plus what a JAX subprocess of the suite needs: CPU only, the test flags, the repo on
    the path, the shared compilation cache (every compile cached, however quick)."""
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "XLA_FLAGS": xla_flags(devices), "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
                "OMP_NUM_THREADS": "1", "JAX_COMPILATION_CACHE_DIR": str(COMPILE_CACHE),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})
    env.update(extra)
    return env
