"""Suite-wide test set-up: keep triton out of the test process; let Python cache bytecode.

TensorFlow (pulled in by seqio in other tests of the same pytest run) and triton each bundle LLVM;
loading triton after TensorFlow aborts the process ("Option ... registered more than once").
torch only imports triton lazily (torch._dynamo, reached by transformers' generate) and treats an
ImportError as "no triton", which is all these CPU tests need.
"""
import os
import sys

import pytest

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # makes `import triton` raise ImportError

# Where PYTHONDONTWRITEBYTECODE is set (as on this kind of machine) and the venv was synced without
# compiled bytecode, every import of TensorFlow/JAX/keras recompiles thousands of files from source,
# in this process and again in each of the suite's ~40 subprocesses (about a CPU-minute each on a
# loaded 2-core machine). Writing the .pyc files once makes every later import read them.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The suite runs on CPU. With the optional libtpu extra installed, JAX would otherwise try (and loudly
# fail) to start a TPU backend in every process; the AOT tests ask libtpu for compile-only devices
# explicitly and need no TPU backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent XLA compilation cache for the whole suite, this process and every subprocess it starts
# (they inherit the environment): the suite compiles the same tiny models' init, train, eval and decode
# functions in dozens of processes, and a compile of even a tiny model costs 1-5 s on CPU (the seeded
# parameter init alone ~4 s) while a cache hit costs ~0.1 s. Entries are keyed by the HLO, the compile
# options, the devices and the jax/jaxlib versions, so a stale entry is never used. Opt out with
# JAX_ENABLE_COMPILATION_CACHE=false.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".cache", "jax-test-compilations"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


# Parallel runs (`make test` uses pytest-xdist with --dist loadgroup): a test file stays on one worker, so
# its module-scoped fixtures (compiled steps, trained tiny runs) are built once; and every test that starts
# sandboxed programs runs on the same worker, because concurrent sandbox pools share the per-worker
# sandbox uids and with them one RLIMIT_NPROC budget.
_SANDBOX_TEST_DIRS = {"execution", "case2code_eval", "case2code_synthesis", "solverlearner"}


def pytest_collection_modifyitems(config, items):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        path = os.path.relpath(str(item.path), tests_dir)
        top = path.split(os.sep)[0]
        group = "sandbox" if top in _SANDBOX_TEST_DIRS else path
        item.add_marker(pytest.mark.xdist_group(group))


def _clear_gin_config():
    gin = sys.modules.get("gin")
    if gin is not None:
        gin.clear_config()


@pytest.fixture(autouse=True)
def _fresh_gin_config():
    """Every test starts and ends with an empty gin config: one test's bindings (e.g. a mesh shape) never
    leak into the next one, whatever order a worker runs them in."""
    _clear_gin_config()
    yield
    _clear_gin_config()
