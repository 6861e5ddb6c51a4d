"""Slice names -> chips and shapes; bad names and a missing libtpu give one clear line."""
import pytest

from patch_training import tpu_topologies as topo
from patch_training.errors import UserError


@pytest.mark.parametrize("name, chips, shape, libtpu_name", [
    ("v5p-8", 4, (2, 2, 1), "v5p:2x2x1"),
    ("v5p-128", 64, (4, 4, 4), "v5p:4x4x4"),
    ("v5p-256", 128, (4, 4, 8), "v5p:4x4x8"),
    ("v5p-512", 256, (4, 8, 8), "v5p:4x8x8"),
    ("v4-32", 16, (2, 2, 4), "v4:2x2x4"),       # v4/v5p names count TensorCores, two per chip
    ("v4-64", 32, (2, 4, 4), "v4:2x4x4"),
    ("v5litepod-16", 16, (4, 4), "v5e:4x4"),    # v5e/v6e names count chips
    ("v5e-8", 8, (2, 4), "v5e:2x4"),
    ("v5litepod-1", 1, (1, 1), "v5e:1x1"),
    ("v6e-16", 16, (4, 4), "v6e:4x4"),
    ("v6e-256", 256, (16, 16), "v6e:16x16"),
    ("v5p:4x4x4", 64, (4, 4, 4), "v5p:4x4x4"),  # libtpu's chip form
    ("v4:2x2x4", 16, (2, 2, 4), "v4:2x2x4"),
    ("v5litepod:4x8", 32, (4, 8), "v5e:4x8"),
])
def test_names_resolve_to_chips_and_shapes(name, chips, shape, libtpu_name):
    spec = topo.parse_topology(name)
    assert (spec.chips, spec.shape, spec.libtpu_name) == (chips, shape, libtpu_name)


def test_host_layout_and_capacity():
    assert topo.parse_topology("v5p-128").chips_per_host_bounds == (2, 2, 1)
    assert topo.parse_topology("v5e-8").chips_per_host_bounds == (2, 4, 1)     # one 8-chip host
    assert topo.parse_topology("v5litepod-16").chips_per_host_bounds == (2, 2, 1)
    assert topo.parse_topology("v5p-128").hbm_capacity_bytes == 95 * 2 ** 30
    assert topo.parse_topology("v5e-4").hbm_capacity_bytes == 16 * 2 ** 30


@pytest.mark.parametrize("name, words", [
    ("v9x-64", ["unknown TPU topology", "v9x"]),
    ("banana", ["unknown TPU topology", "v5p-128"]),
    ("v5p-7", ["TensorCores", "even"]),
    ("v5p-24", ["no standard slice", "12 chips", "v5p:"]),
    ("v5p:4x4", ["3 dimensions"]),
    ("v5e:2x2x2", ["2 dimensions"]),
])
def test_bad_names_fail_with_one_line(name, words):
    with pytest.raises(UserError) as e:
        topo.parse_topology(name)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_missing_extra_says_how_to_install(monkeypatch):
    real = topo.importlib.util.find_spec
    monkeypatch.setattr(topo.importlib.util, "find_spec",
                        lambda name, *a: None if name == "libtpu" else real(name, *a))
    with pytest.raises(UserError) as e:
        topo.topology_devices(topo.parse_topology("v5p-8"))
    msg = str(e.value)
    assert "\n" not in msg and "libtpu" in msg and "setup.sh --tpu" in msg
