"""Sample distributions on disk: one append-only binary file of vocabulary-sized rows.

The full dataset's distributions do not fit in memory (5,689 rows x 3 prompts x 10 samples =
170,670 vectors; at a 32k vocabulary that is 21.8 GB in float32, 10.9 GB in float16), so the sampler appends each batch's rows to `<name>.bin` and the samples
JSONL refers to them by row number; scoring reads only the rows of one item at a time through a
memory map. `<name>.json` records the vocabulary size and dtype. A crash between the two appends
leaves extra rows at the end; `truncate(rows)` drops them on resume.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from patch_training.errors import UserError

DTYPES = ("float32", "float16")


class DistWriter:
    """Appends [V] rows to `directory/name.bin`; `append` returns the row numbers it wrote."""

    def __init__(self, directory: str | Path, name: str, vocab_size: int, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise UserError(f"distribution dtype must be one of {DTYPES}, got {dtype!r}")
        self.directory = Path(directory)
        self.name = name
        self.vocab_size = int(vocab_size)
        self.dtype = np.dtype(dtype)
        self.bin_path = self.directory / f"{name}.bin"
        header_path = self.directory / f"{name}.json"
        header = {"vocab_size": self.vocab_size, "dtype": dtype}
        if header_path.is_file():
            old = json.loads(header_path.read_text())
            if old != header:
                raise UserError(f"{header_path}: existing distributions are {old}, this run writes "
                                f"{header}; use another --out")
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            header_path.write_text(json.dumps(header))
        self._row_bytes = self.vocab_size * self.dtype.itemsize
        size = self.bin_path.stat().st_size if self.bin_path.exists() else 0
        self.rows = size // self._row_bytes

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` rows (those a complete JSONL line refers to)."""
        with open(self.bin_path, "ab") as f:
            f.truncate(rows * self._row_bytes)
        self.rows = rows

    def append(self, dists: np.ndarray) -> list[int]:
        dists = np.asarray(dists)
        if dists.ndim != 2 or dists.shape[1] != self.vocab_size:
            raise ValueError(f"expected [n, {self.vocab_size}] distributions, got {dists.shape}")
        with open(self.bin_path, "ab") as f:
            f.write(np.ascontiguousarray(dists, dtype=self.dtype).tobytes())
            f.flush()
            os.fsync(f.fileno())
        start = self.rows
        self.rows += len(dists)
        return list(range(start, self.rows))


class DistReader:
    """Random access to rows of distribution files, by (file name, row), relative to a directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._maps: dict[str, np.memmap] = {}

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            header_path = self.directory / f"{name}.json"
            bin_path = self.directory / f"{name}.bin"
            if not header_path.is_file() or not bin_path.is_file():
                raise UserError(f"distribution file {bin_path} (or its {header_path.name}) not found")
            header = json.loads(header_path.read_text())
            dtype, vocab = np.dtype(header["dtype"]), int(header["vocab_size"])
            rows = bin_path.stat().st_size // (vocab * dtype.itemsize)
            self._maps[name] = np.memmap(bin_path, dtype=dtype, mode="r", shape=(rows, vocab))
        return self._maps[name]

    def row(self, name: str, index: int) -> np.ndarray:
        table = self._map(name)
        if not 0 <= index < len(table):
            raise KeyError(f"{name}.bin has {len(table)} rows, no row {index}")
        return np.asarray(table[index], dtype=np.float64)
