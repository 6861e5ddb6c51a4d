"""Patch-level pretraining engine: model, partitioning, data, trainer, checkpoints, HF interop."""

import os as _os

# TensorFlow (used only for data preparation via seqio/TFDS) logs INFO lines from C++ at import;
# they would bury the one-line errors and progress lines users read. Users can still override.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
