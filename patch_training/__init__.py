"""Patch-level pretraining engine: model, partitioning, data, trainer, checkpoints, HF interop."""
