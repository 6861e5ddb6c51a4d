"""Suite-wide test set-up: keep triton out of the test process; let Python cache bytecode.

TensorFlow (pulled in by seqio in other tests of the same pytest run) and triton each bundle LLVM;
loading triton after TensorFlow aborts the process ("Option ... registered more than once").
torch only imports triton lazily (torch._dynamo, reached by transformers' generate) and treats an
ImportError as "no triton", which is all these CPU tests need.
"""
import os
import sys

import pytest

from tests.support import xla_env

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
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(xla_env.COMPILE_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Single-threaded Eigen and a fast -O0 compile for in-process JAX work (tests/support/xla_env.py says why);
# test subprocesses get the same through xla_env.subprocess_env.
os.environ.setdefault("XLA_FLAGS", xla_env.xla_flags())


# Parallel runs (`make test` uses pytest-xdist with --dist loadfile): a test file stays on one worker, so
# its module-scoped fixtures (compiled steps, trained tiny runs) are built once. Sandbox tests need no
# worker of their own: each pool leases its own sandbox uid (`evals.execution.launch.UidLease`), so
# concurrent pools never share a process budget. Files are handed out longest first (tests/support/
# schedule.py), so that both workers finish together instead of one running the last long file alone.
def _test_file(item) -> str:
    return os.path.relpath(str(item.path), _REPO)


def pytest_configure(config):
    # xdist's own reordering (most tests first) would undo the longest-first order below.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# Not --dist loadgroup with xdist_group marks: xdist 3.8 writes the group into `item._nodeid`, which
# pytest 9 no longer reads, so the marks were silently ignored and one file's tests were spread over
# both workers, each building the module-scoped fixtures (trained runs, compiled steps) again.
def pytest_collection_modifyitems(config, items):
    from tests.support.schedule import longest_first
    items[:] = longest_first(items, _test_file)


_SECONDS_THIS_RUN: list[tuple[str, float]] = []


def pytest_runtest_logreport(report):
    # On the controller this sees every worker's reports: the per-file seconds for the next run's order.
    _SECONDS_THIS_RUN.append((report.nodeid.split("::")[0], report.duration))


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller records for everyone
        return
    from tests.support.schedule import record_file_seconds
    record_file_seconds(_SECONDS_THIS_RUN)


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


@pytest.fixture(scope="session")
def session_row_store(tmp_path_factory):
    """The session's one ArrayRecord row store (tests/support/row_stores.py): built once, even across
    xdist workers, and shared by the data tests and the trainer's resume-on-the-store test."""
    pytest.importorskip("apache_beam", reason="building a row store needs the beam extra (scripts/setup.sh --beam)")
    from tests.support.row_stores import session_store
    return session_store(tmp_path_factory)
