"""Partitioning in one place: the logical-axis rules table, the device mesh, and shardings.

- Rules: layers annotate parameters and key activations with logical names only; the one table
  below decides how those names land on the physical mesh axes `data`, `fsdp` and `tensor`. Flax
  resolves a logical name to the first rule whose mesh axes are not already taken by another
  dimension of the same array, so `embed` is sharded over `fsdp` for parameters, but stays
  replicated in activations whose `batch` already uses `fsdp`.
- Mesh: built from a gin mesh config, one size per named axis; `-1` means "whatever is left" and
  may appear once. Axis types are `Auto`: XLA propagates shardings from the `jit` in/out shardings
  plus the logical constraints the layers add, which is what Flax Linen expects.
- Shardings: logical names -> `NamedSharding`s for params, optimizer state and batches.
  Optimizer-state leaves that mirror a parameter (Adam's mu/nu) get that parameter's sharding, so
  FSDP shards them too; the rest (step counters) are replicated.

Gin binds the mesh as `partitioning.mesh_shape` (configurables are named after their modules).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from patch_training.errors import UserError

# (logical name, mesh axes). Order matters: earlier rules win.
LOGICAL_AXIS_RULES: tuple[tuple[str, object], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),          # per-head feature dimension
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),      # the stacked (scanned) layer dimension
)

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")


# -- the device mesh -----------------------------------------------------------------------------
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


@gin.configurable(module="partitioning")
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


# -- shardings -----------------------------------------------------------------------------------
BATCH_LOGICAL_AXES = ("batch", "length")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_shardings(boxed_abstract_params: Any, mesh: Mesh) -> Any:
    """Shardings for the unboxed params pytree, from the logical names on the boxed abstract init."""
    specs = nn.get_partition_spec(boxed_abstract_params)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, LOGICAL_AXIS_RULES)
    # Unboxed leaves (no logical names) come back as PartitionSpec(): replicate them explicitly.
    return jax.tree_util.tree_map(
        lambda s: s if isinstance(s, NamedSharding) else NamedSharding(mesh, P()), shardings,
        is_leaf=lambda x: isinstance(x, (NamedSharding, P)))


def opt_state_shardings(tx: optax.GradientTransformation, abstract_opt_state: Any,
                        params_sharding: Any, mesh: Mesh) -> Any:
    """Mirror parameter shardings onto the parameter-shaped parts of the optimizer state."""
    rep = replicated(mesh)
    return optax.tree_map_params(
        tx, lambda _leaf, sharding: sharding, abstract_opt_state, params_sharding,
        transform_non_params=lambda _leaf: rep,
        is_leaf=lambda x: isinstance(x, NamedSharding))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Rows over the data-parallel axes (data, fsdp); the rest replicated."""
    axes = BATCH_LOGICAL_AXES[:ndim] + (None,) * max(ndim - 2, 0)
    spec = nn.logical_to_mesh_axes(axes, LOGICAL_AXIS_RULES)
    return NamedSharding(mesh, spec)


def check_batch_divisible(global_batch_size: int, mesh: Mesh, num_microbatches: int = 1) -> None:
    dp = data_parallel_size(mesh)
    if global_batch_size % num_microbatches:
        raise UserError(f"batch size {global_batch_size} is not divisible by "
                        f"num_microbatches={num_microbatches}")
    micro = global_batch_size // num_microbatches
    if micro % dp:
        raise UserError(f"batch size {global_batch_size} (microbatch {micro}) is not divisible by the "
                        f"data-parallel size {dp} (mesh data={mesh.shape['data']} × fsdp={mesh.shape['fsdp']})")


def _check_host_rows(sharding: NamedSharding, global_shape: tuple[int, ...]) -> None:
    """The data gives each process the contiguous block of rows `process_index`; make sure the
    mesh puts exactly that block on this process's devices (else rows would silently mismatch)."""
    rows = global_shape[0]
    per_host = rows // jax.process_count()
    want = (jax.process_index() * per_host, (jax.process_index() + 1) * per_host)
    spans = [idx[0].indices(rows)[:2] for idx in sharding.addressable_devices_indices_map(global_shape).values()]
    got = (min(s for s, _ in spans), max(e for _, e in spans))
    covered = sum(e - s for s, e in set(spans))
    if got != want or covered != per_host:
        raise UserError(f"mesh {dict(sharding.mesh.shape)}: process {jax.process_index()} holds batch rows "
                        f"{got[0]}..{got[1]} but its input shard is rows {want[0]}..{want[1]}; order the mesh "
                        f"so each host's devices are contiguous along data/fsdp")


_checked_shapes: set = set()


def global_batch(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble this process's rows into global arrays sharded over the data-parallel axes."""
    out = {}
    for name, local in host_batch.items():
        local = np.asarray(local)
        sharding = batch_sharding(mesh, local.ndim)
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        if jax.process_count() > 1 and (id(mesh), global_shape) not in _checked_shapes:
            _check_host_rows(sharding, global_shape)
            _checked_shapes.add((id(mesh), global_shape))
        out[name] = jax.make_array_from_process_local_data(sharding, local, global_shape)
    return out


class mesh_context:
    """Enter the mesh and the logical rules together, so `nn.with_logical_constraint` in the layers
    resolves against this mesh while tracing."""

    def __init__(self, mesh: Mesh):
        self._mesh_cm = jax.set_mesh(mesh)
        self._rules_cm = nn.logical_axis_rules(LOGICAL_AXIS_RULES)

    def __enter__(self):
        self._mesh_cm.__enter__()
        self._rules_cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._rules_cm.__exit__(*exc)
        return self._mesh_cm.__exit__(*exc)
