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

