"""Run metrics: TensorBoard (tensorboardX), `metrics.jsonl` at full float precision, console progress.

`metrics.jsonl` holds one JSON object per logged step. Python's `repr` of a float round-trips
exactly, so the file is a bit-exact record (the exact-resume test compares it). On resume the
file is cut back to the restored step so the killed run's extra lines never duplicate.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Mapping, TextIO

import numpy as np

from patch_training.atomic import write_text_atomic

METRICS_FILE = "metrics.jsonl"


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/inf; keep them readable and parseable.
    return value


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without torch.

    tensorboardX's writer module tries `import torch` only to accept torch tensors; when torch is
    installed (it is here, for the HF parity tests) that costs seconds of start-up in every run.
    We hide torch for the duration of the import unless something already imported it.
    """
    if "tensorboardX.writer" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
        try:
            from tensorboardX import SummaryWriter
        finally:
            del sys.modules["torch"]
        return SummaryWriter
    from tensorboardX import SummaryWriter
    return SummaryWriter


def truncate_jsonl(path: str | os.PathLike, keep_through_step: int) -> int:
    """Drop lines with `step > keep_through_step` and any partial last line; return lines kept."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by SIGKILL mid-write
        if int(rec.get("step", 0)) <= keep_through_step:
            kept.append(line)
    write_text_atomic(path, "".join(l + "\n" for l in kept))
    return len(kept)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsWriter:
    """Writes scalars to TensorBoard and `metrics.jsonl`; only process 0 writes."""

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.run_dir / METRICS_FILE, "a", buffering=1)
            if tensorboard:
                self._tb = _summary_writer_class()(str(self.run_dir / "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, object], prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        for k, v in scalars.items():
            record[prefix + k] = _plain(v)
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def flush(self) -> None:
        if self._jsonl:
            self._jsonl.flush()
            os.fsync(self._jsonl.fileno())
        if self._tb:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl:
            self.flush()
            self._jsonl.close()
            self._jsonl = None
        if self._tb:
            self._tb.close()
            self._tb = None


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressLine:
    """One console line per log interval: step, loss, lr, tokens/s, s/step and ETA."""

    def __init__(self, total_steps: int, stream: TextIO | None = None, enabled: bool = True):
        self.total_steps = total_steps
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._start = time.perf_counter()

    def show(self, step: int, loss: float, lr: float, tokens_per_s: float, step_time: float,
             extra: str = "") -> str:
        eta = (self.total_steps - step) * step_time
        line = (f"step {step}/{self.total_steps} ({100.0 * step / max(self.total_steps, 1):.0f}%) "
                f"loss {loss:.4f} lr {lr:.2e} | {tokens_per_s:,.0f} tok/s {step_time:.3f} s/step | "
                f"elapsed {format_duration(time.perf_counter() - self._start)} ETA {format_duration(eta)}"
                + (f" | {extra}" if extra else ""))
        if self.enabled:
            print(line, file=self.stream, flush=True)
        return line
