"""The row store: a row set as sharded ArrayRecord files plus one `meta.json`, read by random access.

Layout of one row set (`<root>/<task>-<split>-<mode><K>-L<length>/`, built by
`python -m patch_training.data.preprocess`):
- `rows-00000.array_record`, ...: one record per row, the row's stored arrays (targets, segment ids,
  positions, in the dtypes `meta.json` names) back to back; written with `group_size:1`, so reading one
  row decompresses only that row.
- `meta.json` (written last: its presence means complete): the row count, each shard's row count and
  first global row id, the row layout (length, mode, K, dtypes), the key parts and fingerprint (the same
  parts as the memmap cache's key, `factory.row_key_parts`), counts and the malformed-row report.

Training opens only this (no Beam, no TensorFlow for a local or gcsfuse-mounted store): a global row id
maps to (shard, index) by the offsets, so each host reads exactly the rows of its slice of each step.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from patch_training.errors import UserError

META_FILE = "meta.json"
SHARD_SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1"
READER_OPTIONS = "readahead_buffer_size:0"  # random access: read-ahead would fetch rows nobody asked for
PREPROCESS_COMMAND = "python -m patch_training.data.preprocess"
# Key parts that name where a host keeps local files, not what the rows hold.
_HOST_LOCAL_PARTS = ("tfds_dir",)


def shard_name(index: int) -> str:
    return f"rows-{index:05d}{SHARD_SUFFIX}"


# ---------------------------------------------------------------------------------------------
# Paths that may be local or URLs (gs://): local ones through os, URLs through tf.io.gfile.

def is_url(path: str) -> bool:
    return "://" in str(path)


def join(root: str, *parts: str) -> str:
    return "/".join([str(root).rstrip("/"), *parts]) if is_url(root) else os.path.join(root, *parts)


def _gfile():
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import tensorflow as tf
    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def makedirs(path: str) -> None:
    _gfile().makedirs(path) if is_url(path) else os.makedirs(path, exist_ok=True)


def read_text(path: str) -> str:
    if is_url(path):
        with _gfile().GFile(path, "r") as f:
            return f.read()
    with open(path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """Atomically: a reader sees the old file or the whole new one (rename; object stores write whole)."""
    if is_url(path):
        with _gfile().GFile(path, "w") as f:
            f.write(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def put_file(local: str, dest: str) -> None:
    """Move a finished local file into place (a copy for URLs); the final name appears only complete."""
    if is_url(dest):
        _gfile().copy(local, dest, overwrite=True)
        os.remove(local)
    else:
        os.replace(local, dest)


# ---------------------------------------------------------------------------------------------
# Row encoding

def row_dtypes(meta: dict) -> list[tuple[str, np.dtype]]:
    from patch_training.data.step_dataset import STORED
    return [(k, np.dtype(meta["dtypes"][k])) for k in STORED]


def encode_rows(arrays: dict[str, np.ndarray], dtypes: Sequence[tuple[str, np.dtype]]) -> list[bytes]:
    """One record per row: the stored arrays of the row, back to back, in the store's dtypes."""
    parts = [np.ascontiguousarray(arrays[k], dt) for k, dt in dtypes]
    packed = np.concatenate([p.view(np.uint8).reshape(len(p), -1) for p in parts], axis=1)
    return [r.tobytes() for r in packed]


def decode_rows(records: Sequence[bytes], length: int, dtypes: Sequence[tuple[str, np.dtype]]) -> dict:
    raw = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), -1)
    out, at = {}, 0
    for k, dt in dtypes:
        width = length * dt.itemsize
        out[k] = np.ascontiguousarray(raw[:, at:at + width]).view(dt)
        at += width
    return out


# ---------------------------------------------------------------------------------------------
# Reading

class ArrayRecordRows:
    """The store's reader: rows by global id, one ArrayRecord reader per shard (opened on first use).

    Counts what it reads (`rows_read`, `bytes_read`) so a benchmark can show each host reads only its slice.
    """

    prefetch_depth = 2  # remote or cold reads: the trainer reads the next batches ahead in a thread

    def __init__(self, directory: str, meta: dict):
        self.directory, self.meta = directory, meta
        self.length = int(meta["sequence_length"])
        self.dtypes = row_dtypes(meta)
        self.row_bytes = sum(self.length * dt.itemsize for _, dt in self.dtypes)
        self.offsets = np.array([s["first_row"] for s in meta["shards"]], np.int64)
        self._readers: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.rows_read = 0
        self.bytes_read = 0

    def _reader(self, shard: int):
        with self._lock:
            if shard not in self._readers:
                from array_record.python.array_record_module import ArrayRecordReader
                path = join(self.directory, self.meta["shards"][shard]["file"])
                try:
                    self._readers[shard] = ArrayRecordReader(path, READER_OPTIONS)
                except Exception as e:
                    hint = " (read a gs:// store through a gcsfuse mount)" if is_url(path) else ""
                    raise UserError(f"cannot open row store shard {path}: {str(e).splitlines()[0][:160]}{hint}") from None
            return self._readers[shard]

    def read(self, sorted_ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(sorted_ids, np.int64)
        if len(ids) and (ids[0] < 0 or ids[-1] >= int(self.meta["num_rows"])):
            raise IndexError(f"row id out of range [0, {self.meta['num_rows']})")
        shards = np.searchsorted(self.offsets, ids, side="right") - 1
        records: list[bytes] = []
        for shard in np.unique(shards):
            local = (ids[shards == shard] - self.offsets[shard]).tolist()
            records.extend(self._reader(int(shard)).read(local))
        with self._lock:  # the read-ahead thread and the trainer's own thread may both be reading
            self.rows_read += len(records)
            self.bytes_read += sum(len(r) for r in records)
        if not records:
            return {k: np.zeros((0, self.length), dt) for k, dt in self.dtypes}
        return decode_rows(records, self.length, self.dtypes)

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()


def read_meta(directory: str) -> dict | None:
    path = join(directory, META_FILE)
    if not exists(path):
        return None
    try:
        return json.loads(read_text(path))
    except (OSError, ValueError) as e:
        raise UserError(f"row store {path} is unreadable: {str(e)[:160]}") from None


def open_store(directory: str) -> tuple[dict, ArrayRecordRows]:
    meta = read_meta(directory)
    if meta is None:
        raise UserError(f"no row store at {directory} ({META_FILE} missing)")
    return meta, ArrayRecordRows(directory, meta)


def store_mismatch(recorded: dict, expected: dict) -> list[str]:
    """Key parts on which a store differs from what a run asks for; `content: None` in `expected` (the
    corpus is not readable on this host) accepts the store's record of the corpus."""
    diffs = []
    for k in sorted(set(recorded) | set(expected)):
        if k in _HOST_LOCAL_PARTS or (k == "content" and expected.get(k) is None):
            continue
        if recorded.get(k) != expected.get(k):
            diffs.append(k)
    return diffs


def build_command(root: str, flags: Sequence[str], argv: Sequence[str] | None = None) -> str:
    """The preprocess command for one row set: this run's own gin flags (so corpus and tokenizer
    bindings match), the store root and the row set's flags."""
    argv = sys.argv[1:] if argv is None else argv
    gin_flags = [a for a in argv if a.startswith("--gin_file") or a.startswith("--gin.")
                 or a.startswith("--gin_search_path")] or ["--gin_file=<this run's gin files>"]
    return " ".join([PREPROCESS_COMMAND, *map(shlex.quote, gin_flags), f"--out={shlex.quote(str(root))}",
                     *flags])


def open_matching_store(root: str, name: str, key_parts: dict, *, seed: int, shuffle: bool,
                        build_flags: Sequence[str], content: Callable[[dict], str | None] | None = None):
    """The row set `name` under `root` as a `StepIndexedDataset`, if it was built for `key_parts`.

    `content(meta)`, when given, is the corpus content to compare, worked out once the store's meta is read
    (so it can accept the store's record of unchanged files without reading them: `factory.store_content`).
    """
    from patch_training.data.step_dataset import StepIndexedDataset
    directory = join(str(root), name)
    command = build_command(root, build_flags)
    meta = read_meta(directory)
    if meta is None:
        raise UserError(f"row store {directory} not found (no {META_FILE}); build it with: {command}")
    if content is not None:
        key_parts = {**key_parts, "content": content(meta)}
    diffs = store_mismatch(meta.get("key", {}), key_parts)
    if diffs:
        raise UserError(f"row store {directory} was built for other data (differs in: {', '.join(diffs)}); "
                        f"rebuild it with: {command}")
    ds = StepIndexedDataset(directory, seed=seed, shuffle=shuffle, opened=(meta, ArrayRecordRows(directory, meta)))
    report = meta.get("row_report")
    if report:
        from patch_training.data.corpora import RowReport
        RowReport.from_dict(report).log(f"row store {directory}")
    return ds
