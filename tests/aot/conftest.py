"""AOT tests compile for TPU topologies explicitly; the test process itself stays on the CPU.

With the `tpu` extra installed, JAX would otherwise try the TPU plugin for local devices (and
libtpu prints start-up warnings on a machine without TPUs). Setting the platform here only takes
effect when no JAX backend was started yet; the suite-wide equivalent belongs in tests/conftest.py.
"""
import importlib.util
import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="needs the tpu extra (scripts/setup.sh --tpu)")


@pytest.fixture(autouse=True)
def _tpu_compiles_skip_the_persistent_cache():
    """libtpu's compile-only executables are written to the suite's persistent cache (~8 MB each at 370M)
    but cannot be read back ("PjRtCompiler must be constructed with a Client"): every later run warned and
    compiled anyway. The AOT tests therefore compile uncached; the rest of the suite keeps the cache."""
    import jax
    from jax._src import compilation_cache   # jax memoizes whether the cache is in use; reset re-reads it

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_enable_compilation_cache", enabled)
    compilation_cache.reset_cache()
