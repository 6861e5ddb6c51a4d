"""patch_training.allocator: finding tcmalloc and preloading it without overriding a user's choice."""
from __future__ import annotations

import subprocess
import sys

import pytest

from patch_training import allocator


def test_find_tcmalloc_takes_the_first_directory_that_has_one(tmp_path):
    empty, lib_dir = tmp_path / "empty", tmp_path / "lib"
    empty.mkdir()
    lib_dir.mkdir()
    assert allocator.find_tcmalloc((str(empty),)) is None
    (lib_dir / "libtcmalloc.so.4").write_bytes(b"")
    assert allocator.find_tcmalloc((str(empty), str(lib_dir))) == str(lib_dir / "libtcmalloc.so.4")
    (lib_dir / "libtcmalloc_minimal.so.4").write_bytes(b"")  # the minimal build is preferred
    assert allocator.find_tcmalloc((str(lib_dir),)) == str(lib_dir / "libtcmalloc_minimal.so.4")


def test_a_preloaded_allocator_is_left_alone_and_other_preloads_are_kept():
    assert allocator.preloaded_allocator({"LD_PRELOAD": "/x/libfoo.so /usr/lib/libjemalloc.so.2"}) \
        == "/usr/lib/libjemalloc.so.2"
    assert allocator.preloaded_allocator({"LD_PRELOAD": "/x/libfoo.so"}) is None
    assert allocator.env_with_tcmalloc({"LD_PRELOAD": "libtcmalloc.so.4"}, "/l/libtcmalloc.so.4") is None
    env = allocator.env_with_tcmalloc({"LD_PRELOAD": "/x/libfoo.so", "A": "1"}, "/l/libtcmalloc_minimal.so.4")
    assert env == {"LD_PRELOAD": "/l/libtcmalloc_minimal.so.4 /x/libfoo.so", "A": "1"}


def test_a_process_started_with_the_env_runs_on_tcmalloc():
    library = allocator.find_tcmalloc()
    if library is None:
        pytest.skip("tcmalloc is not installed (scripts/setup.sh installs libtcmalloc-minimal4)")
    env = allocator.env_with_tcmalloc({"PATH": "/usr/bin:/bin"})
    maps = subprocess.run([sys.executable, "-c", "print(open('/proc/self/maps').read())"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert library in maps


def test_the_cpu_training_hint_names_the_library_or_the_package_and_is_silent_when_preloaded():
    assert allocator.cpu_training_hint({"LD_PRELOAD": "/l/libjemalloc.so.2"}, "/l/libtcmalloc.so.4") is None
    hint = allocator.cpu_training_hint({}, "/l/libtcmalloc_minimal.so.4")
    assert "LD_PRELOAD=/l/libtcmalloc_minimal.so.4" in hint and "\n" not in hint
    if allocator.find_tcmalloc() is None:
        assert "libtcmalloc-minimal4" in allocator.cpu_training_hint({})
