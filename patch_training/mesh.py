"""Build the device `Mesh` (axes data/fsdp/tensor) from a gin mesh config.

A mesh config gives one size per named axis; `-1` means "whatever is left" and may appear once.
Axis types are stated explicitly: `Auto` lets XLA propagate shardings from the `jit` in/out
shardings plus the logical constraints the layers add, which is what Flax Linen expects.
"""
from __future__ import annotations

import math
from typing import Sequence

import gin
import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from patch_training.errors import UserError
from patch_training.partitioning import MESH_AXES


def resolve_axis_sizes(sizes: Sequence[int], num_devices: int,
                       names: Sequence[str] = MESH_AXES) -> tuple[int, ...]:
    """Replace a single `-1` by the remaining factor; check that the product is `num_devices`."""
    sizes = [int(s) for s in sizes]
    shape = dict(zip(names, sizes))
    if len(sizes) != len(names):
        raise UserError(f"mesh: expected {len(names)} axis sizes for {tuple(names)}, got {tuple(sizes)}")
    if sizes.count(-1) > 1:
        raise UserError(f"mesh {shape}: at most one axis may be -1 (\"the rest\")")
    if any(s == 0 or s < -1 for s in sizes):
        raise UserError(f"mesh {shape}: axis sizes must be positive or -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise UserError(f"mesh {shape} does not divide the {num_devices} devices "
                            f"(the fixed axes need a multiple of {known})")
        sizes[sizes.index(-1)] = num_devices // known
    elif known != num_devices:
        raise UserError(f"mesh {shape} needs {known} devices but {num_devices} are available")
    return tuple(sizes)


@gin.configurable(module="mesh")
def mesh_shape(*, data: int = -1, fsdp: int = 1, tensor: int = 1) -> tuple[int, int, int]:
    """The gin surface of a mesh config: `mesh_shape.data = 2`, etc. (-1 = the rest)."""
    return (data, fsdp, tensor)


def make_mesh(shape: Sequence[int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `Mesh` over all (or the given) devices with axes `data`, `fsdp`, `tensor`.

    `shape` defaults to the gin-configured `mesh_shape()`. Devices are laid out by
    `jax.make_mesh` (topology-aware on TPU/GPU) when all devices are used.
    """
    devices = list(devices) if devices is not None else jax.devices()
    sizes = resolve_axis_sizes(shape if shape is not None else mesh_shape(), len(devices))
    types = (AxisType.Auto,) * len(MESH_AXES)
    if len(devices) == jax.device_count():
        return jax.make_mesh(sizes, MESH_AXES, axis_types=types, devices=devices)
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=types)


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch dimension is split (the `batch` rule uses data and fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def describe(mesh: Mesh) -> str:
    return " ".join(f"{k}={v}" for k, v in mesh.shape.items()) + f" ({mesh.devices.size} devices)"
