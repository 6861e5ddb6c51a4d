"""Import TensorFlow without its C++ start-up chatter.

TensorFlow (used only for data preparation through seqio/TFDS) prints INFO lines from C++ when its
shared libraries load ("oneDNN custom operations are on", "Could not find cuda drivers"), before
any logging flag takes effect. They bury the one-line errors and progress lines users read. This
loads TensorFlow once with stderr captured and replays every line that is not such known noise.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"(All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|cudart_stub|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|TF-TRT Warning|This TensorFlow binary is optimized)")


def ensure_tensorflow_imported() -> None:
    """Import tensorflow (idempotent), filtering its known start-up noise from stderr."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr fd (e.g. embedded): just import
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not _NOISE.search(line):
                    print(line, file=sys.stderr)
