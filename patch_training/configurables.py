"""Import every library module that registers gin configurables a run file may bind.

The entry points (`patch_training.main`) import this before parsing gin files, and the
config-parsing test does the same, so a binding to an unknown name fails with one line instead of
depending on import order. Library modules only: nothing here imports an entry point.
"""
from __future__ import annotations

from patch_training import checkpointing, model, optimizer, partitioning, trainer  # noqa: F401
from patch_training import training  # noqa: F401  (training.train, training.run_training)
from patch_training import two_stage_training  # noqa: F401  (TwoStageConfig, run_experiment)
from patch_training.data import factory, tasks, vocab  # noqa: F401
