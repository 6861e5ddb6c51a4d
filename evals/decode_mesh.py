"""Decoding and scoring on every local device: rows split across the devices, the weights replicated.

An eval host with several accelerators (a TPU VM's 4-8 chips, a GPU host's 8 GPUs) decodes one
checkpoint with all of them through a one-axis mesh `("data",)` over `jax.local_devices()`:
- the engine state, whose every leaf leads with the row dimension, is split over `data`;
- the weights are replicated, so each device holds the whole model (the case where a model fits one
  device; a model that does not belongs in vLLM after an HF export, see WORKSPACE);
- the jitted decode functions are unchanged: XLA partitions them from their inputs' shardings, and
  `constrain_rows` pins the returned state to the same layout so every call sees one sharding (no
  recompiles, no silent gather onto device 0).

Row counts are rounded up to a multiple of the device count so every device gets the same number of
rows. A row's tokens do not depend on the device it lands on: sampling keys are per row and every
per-row computation is independent of the others (tested on 8 fake CPU devices).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from patch_training.errors import UserError

AXIS = "data"


def local_mesh(devices: int | str | None = "all") -> Mesh | None:
    """A `("data",)` mesh over the first `devices` local devices ("all": every one); None for one device.

    None keeps the single-device path exactly as it was (no sharding annotations at all)."""
    local = jax.local_devices()
    if devices in (None, "all", "auto"):
        n = len(local)
    else:
        try:
            n = int(devices)
        except (TypeError, ValueError):
            raise UserError(f"devices={devices!r}: expected 'all' or a positive count") from None
        if not 1 <= n <= len(local):
            raise UserError(f"devices={n}: this host has {len(local)} local device(s) "
                            f"({local[0].platform}); ask for 1..{len(local)} or 'all'")
    if n == 1:
        return None
    return Mesh(np.asarray(local[:n]), (AXIS,))


def device_count(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.size)


def round_rows(rows: int, mesh: Mesh | None) -> int:
    """`rows` rounded up to a multiple of the mesh's device count (each device the same share)."""
    n = device_count(mesh)
    return -(-int(rows) // n) * n


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Every leaf of `tree` copied onto every device of the mesh (unchanged without a mesh)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P()))


def _row_sharding(mesh: Mesh, leaf: Any) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS, *([None] * (np.ndim(leaf) - 1))))


def shard_rows(tree: Any, mesh: Mesh | None) -> Any:
    """Every leaf's leading (row) dimension split over the mesh (unchanged without a mesh)."""
    if mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, _row_sharding(mesh, x)), tree)


def constrain_rows(tree: Any, mesh: Mesh | None) -> Any:
    """Inside a jitted function: the same layout as `shard_rows`, as a sharding constraint."""
    if mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, _row_sharding(mesh, x)), tree)
