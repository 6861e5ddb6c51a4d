"""Old import path of the sharding helpers; they live in `patch_training.partitioning`."""
from patch_training.partitioning import (  # noqa: F401
    BATCH_LOGICAL_AXES, LOGICAL_AXIS_RULES, batch_sharding, check_batch_divisible, global_batch, mesh_context,
    opt_state_shardings, param_shardings, replicated)
