"""Import every module that registers gin configurables a run file may bind.

`train.py` imports this before parsing gin files, and the config-parsing test does the same,
so a binding to an unknown name fails with one line instead of depending on import order.
"""
from __future__ import annotations

import importlib

from patch_training import mesh, optimizer, trainer  # noqa: F401
from patch_training import model  # noqa: F401  (ModelConfig)
from patch_training import two_stage  # noqa: F401  (TwoStageConfig, run_experiment)

# Modules other helpers own; imported when present so their configurables are registered.
_OPTIONAL = ("patch_training.data.vocab", "patch_training.data.tasks", "patch_training.data.factory",
             "patch_training.checkpointing")

for _name in _OPTIONAL:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _e:
        if _e.name != _name:
            raise
