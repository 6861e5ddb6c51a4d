"""Named Cloud TPU slices -> compile-only TPU devices on any machine (libtpu + `jax.experimental.topologies`).

Two spellings are accepted:

- the cloud's accelerator names: `v4-32`, `v5p-128`, `v5litepod-16` (alias `v5e-16`), `v6e-16`.
  For v4 and v5p the number counts TensorCores (two per chip, fused into one "megacore" device),
  for v5e and v6e it counts chips;
- libtpu's chip form `<generation>:<shape>`: `v5p:4x4x4`, `v4:2x2x4`, `v5e:4x4`, `v6e:4x4`.

The shapes for the accelerator names follow the usual slice layouts (v5p-128 = 4x4x4): the chip
count doubles by growing the rightmost of the smallest dimensions. Per-chip HBM and bf16 peaks are
the published figures (REFERENCE §5 for the peaks); they are what `aot` compares memory against.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re

from patch_training.errors import UserError

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Generation:
    name: str                # libtpu's generation name in the chip form
    dims: int                # 3: a 3-D torus (v4, v5p); 2: a 2-D mesh (v5e, v6e)
    cores_in_name: bool      # the accelerator name counts TensorCores (2 per chip), not chips
    chip_config: str         # "megacore": one JAX device per chip, as on the real slice
    hbm_bytes: int           # per chip
    peak_tflops_bf16: float  # per chip, dense
    single_host_chips: int   # the largest slice served by one host (larger: 2x2 chips per host)


GENERATIONS: dict[str, Generation] = {
    "v4": Generation("v4", 3, True, "megacore", 32 * GiB, 275.0, 4),
    "v5p": Generation("v5p", 3, True, "megacore", 95 * GiB, 459.0, 4),
    "v5e": Generation("v5e", 2, False, "default", 16 * GiB, 197.0, 8),
    "v6e": Generation("v6e", 2, False, "default", 32 * GiB, 918.0, 8),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e", "v6lite": "v6e"}
EXAMPLES = "v5p-128, v5litepod-16, v4-32, v6e-16 or v5p:4x4x4"


@dataclasses.dataclass(frozen=True)
class TopologySpec:
    name: str                       # as the user wrote it
    generation: Generation
    shape: tuple[int, ...]          # chips along each dimension

    @property
    def chips(self) -> int:
        return math.prod(self.shape)

    @property
    def libtpu_name(self) -> str:
        return f"{self.generation.name}:{'x'.join(map(str, self.shape))}"

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        gen = self.generation
        if self.chips <= gen.single_host_chips:
            return tuple(self.shape) + (1,) * (3 - len(self.shape))
        return (2, 2, 1)

    @property
    def hbm_capacity_bytes(self) -> int:
        return self.generation.hbm_bytes


def _generation(text: str, original: str) -> Generation:
    key = _ALIASES.get(text.lower(), text.lower())
    if key not in GENERATIONS:
        raise UserError(f"unknown TPU topology {original!r}: generation {text!r} is not one of "
                        f"{', '.join(sorted(GENERATIONS))} (examples: {EXAMPLES})")
    return GENERATIONS[key]


def slice_shape(chips: int, dims: int) -> tuple[int, ...]:
    """The usual layout of a slice of `chips` chips: 4 -> 2x2(x1), 8 -> 2x2x2 / 2x4, 64 -> 4x4x4 / 8x8."""
    if chips == 1:
        return (1,) * dims
    if chips < 4 or chips & (chips - 1):
        raise ValueError(chips)
    shape = [2, 2] + [1] * (dims - 2)
    while math.prod(shape) < chips:
        smallest = min(shape)
        i = max(j for j, s in enumerate(shape) if s == smallest)
        shape[i] *= 2
    return tuple(shape)


def parse_topology(text: str) -> TopologySpec:
    """`v5p-128` / `v5p:4x4x4` -> TopologySpec; anything else -> one-line UserError."""
    raw = text.strip()
    chip_form = re.fullmatch(r"([a-zA-Z0-9]+)[:=](\d+(?:x\d+)*)", raw)
    if chip_form:
        gen = _generation(chip_form.group(1), raw)
        shape = tuple(int(x) for x in chip_form.group(2).split("x"))
        if len(shape) != gen.dims or min(shape) < 1:
            raise UserError(f"TPU topology {raw!r}: {gen.name} slices have {gen.dims} dimensions "
                            f"(e.g. {gen.name}:{'x'.join(['2'] * gen.dims)})")
        return TopologySpec(raw, gen, shape)
    cloud = re.fullmatch(r"([a-zA-Z0-9]+?)-(\d+)", raw)
    if not cloud:
        raise UserError(f"unknown TPU topology {raw!r}: expected an accelerator name or a chip shape "
                        f"({EXAMPLES})")
    gen = _generation(cloud.group(1), raw)
    count = int(cloud.group(2))
    if gen.cores_in_name and count % 2:
        raise UserError(f"TPU topology {raw!r}: {gen.name} names count TensorCores (2 per chip); "
                        f"use an even number, e.g. {gen.name}-8")
    chips = count // 2 if gen.cores_in_name else count
    try:
        shape = slice_shape(chips, gen.dims)
    except ValueError:
        raise UserError(f"TPU topology {raw!r}: no standard slice has {chips} chips; give the shape "
                        f"instead, e.g. {gen.name}:{'x'.join(['4'] * gen.dims)}") from None
    return TopologySpec(raw, gen, shape)


def _quiet_libtpu_environment() -> None:
    """libtpu looks for TPU VM metadata on load; on a machine without TPUs that only prints warnings.

    Telling it up front that there is no metadata server and one local worker keeps its start-up
    silent; a real TPU VM's own settings are kept (setdefault).
    """
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    # Compiling touches no chip, so several processes (parallel tests, two users) may load libtpu;
    # without this the second one stops at libtpu's /tmp/libtpu_lockfile.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_libtpu() -> None:
    if importlib.util.find_spec("libtpu") is None:
        raise UserError("ahead-of-time TPU compilation needs the optional libtpu package: run "
                        "`scripts/setup.sh --tpu` (or `uv sync --extra tpu`) and retry")


def topology_devices(spec: TopologySpec) -> list:
    """Compile-only devices for the whole slice (one per chip; host layout as on the real slice)."""
    require_libtpu()
    _quiet_libtpu_environment()
    from jax.experimental import topologies
    try:
        desc = topologies.get_topology_desc(
            platform="tpu", topology_name=spec.libtpu_name, chip_config_name=spec.generation.chip_config,
            chips_per_host_bounds=spec.chips_per_host_bounds, num_slices=1)
    except Exception as e:  # libtpu raises JaxRuntimeError with multi-line text
        first = " ".join(str(e).split())[:200]
        raise UserError(f"libtpu cannot build TPU topology {spec.name!r} ({spec.libtpu_name}): {first}") from None
    devices = list(desc.devices)
    if len(devices) != spec.chips:
        raise UserError(f"TPU topology {spec.name!r}: libtpu gave {len(devices)} devices for "
                        f"{spec.chips} chips")
    return devices
