"""The one logical-axis rules table, and helpers to turn logical names into shardings.

Layers annotate parameters and key activations with logical names only; this module decides how
those names land on the physical mesh axes `data`, `fsdp` and `tensor`. Flax resolves a logical name
to the first rule whose mesh axes are not already taken by another dimension of the same array, so
`embed` is sharded over `fsdp` for parameters, but stays replicated in activations whose `batch`
already uses `fsdp`.
"""
from __future__ import annotations

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
    ("cache_length", None),
)

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
