"""Old import path of the device mesh helpers; they live in `patch_training.partitioning`.

Gin files keep `from patch_training import mesh` and `mesh.mesh_shape.*` (the configurable is
registered under the gin module name `mesh` by `partitioning`)."""
from patch_training.partitioning import (  # noqa: F401
    MESH_AXES, data_parallel_size, describe, make_mesh, mesh_shape, resolve_axis_sizes)
