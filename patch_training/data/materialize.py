"""Run a seqio Task once and store its rows in an offline cache (raw memmap arrays + meta.json).

Modes:
- 'packed': documents longer than a row are first cut into row-sized pieces (nothing dropped).
  A full-length piece is already a finished row (one segment, positions 0..L-1) and is written
  directly; the short pieces (document tails and short documents) are packed together by seqio's
  `DecoderFeatureConverter(pack=True)`. Keeping full pieces out of seqio's sequential packer both
  packs the tails densely (they are no longer separated by full pieces) and makes the build
  several times faster at short row lengths.
- 'padded': `DecoderFeatureConverter(pack=False)`; one piece per row, zero-padded.
- 'concat': documents joined with their EOS separators and cut into rows of exactly
  `sequence_length` tokens, one segment per row (patch mode: K*T tokens, no segment restarts).

The cache is written into a scratch directory and renamed into place when complete, and meta.json
(the completeness marker) is written last, so an interrupted build is never read.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from patch_training.data.step_dataset import META_FILE, STORED

BATCH_ROWS = 256  # rows per tf.data batch while materialising


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


def stored_dtypes(tokens: np.dtype, length: int) -> dict[str, np.dtype]:
    """The stored arrays' dtypes (cache and store alike): the smallest that hold the values."""
    return {"targets": np.dtype(tokens), "segment_ids": np.dtype(np.uint16),
            "positions": np.dtype(np.uint16 if length < 2**16 else np.int32)}


class _Writer:
    """Append-only row writer for the stored arrays."""

    def __init__(self, directory: Path, length: int, token_dtype: np.dtype):
        self.length = length
        self.dtypes = stored_dtypes(token_dtype, length)
        self.files = {k: open(directory / f"{k}.bin", "wb") for k in STORED}
        self.rows = 0
        self.tokens = 0

    def write(self, targets: np.ndarray, segment_ids: np.ndarray, positions: np.ndarray) -> None:
        self.files["targets"].write(np.ascontiguousarray(targets, self.dtypes["targets"]).tobytes())
        self.files["segment_ids"].write(np.ascontiguousarray(segment_ids, self.dtypes["segment_ids"]).tobytes())
        self.files["positions"].write(np.ascontiguousarray(positions, self.dtypes["positions"]).tobytes())
        self.rows += len(targets)
        self.tokens += int(np.count_nonzero(targets))

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class _Progress:
    """A log line every few seconds with rate and ETA (documents known from the TFDS split info)."""

    def __init__(self, what: str, total_docs: int | None):
        self.what, self.total, self.start, self.last = what, total_docs, time.time(), 0.0

    def update(self, docs: int, tokens: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < 5.0:
            return
        self.last = now
        dt = max(now - self.start, 1e-9)
        eta = ""
        if self.total and docs:
            eta = f", ETA {max(0.0, (self.total - docs) * dt / docs):.0f}s"
        of = f"/{self.total}" if self.total else ""
        print(f"[data] {self.what}: {docs}{of} docs, {tokens / 1e6:.2f}M tokens, "
              f"{tokens / dt / 1e6:.2f}M tok/s{eta}", file=sys.stderr, flush=True)


def _doc_count(builder, tfds_split: str) -> int | None:
    try:
        return int(builder.info.splits[tfds_split].num_examples)
    except Exception:  # unknown for some datasets; progress then has no ETA
        return None


def materialize(task, builder, tfds_split: str, split: str, *, sequence_length: int, mode: str,
                patch_size: int, vocab, out_dir: Path, meta_extra: dict,
                max_tokens: int | None = None) -> None:
    """Build the row cache for (task, split) into `out_dir` (atomically)."""
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio
    import tensorflow as tf

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    writer = _Writer(tmp, sequence_length, token_dtype(vocab.vocab_size))
    progress = _Progress(f"{meta_extra['task']}/{split} ({mode}, L={sequence_length})",
                         _doc_count(builder, tfds_split))
    try:
        with tf.device("/cpu:0"):
            if mode == "concat":
                ds = task.get_dataset(None, split=split, shuffle=False, num_epochs=1, use_cached=False)
                docs = _write_concat(ds, writer, sequence_length, progress, max_tokens)
            else:
                if mode == "packed":
                    # Whole documents; cutting them in numpy is much faster than the Task's
                    # per-document tf.data split and yields the very same pieces.
                    ds = task.get_dataset(None, split=split, shuffle=False, num_epochs=1, use_cached=False)
                    docs = _write_packed(ds, writer, progress, int(vocab.eos_id), sequence_length,
                                         scratch=tmp / "scratch", max_tokens=max_tokens)
                else:
                    lengths = {"targets": sequence_length}
                    ds = task.get_dataset(lengths, split=split, shuffle=False, num_epochs=1, use_cached=False)
                    if max_tokens is not None:  # whole pieces until the budget is reached
                        ds = ds.scan(np.int64(0), lambda seen, ex: (seen + tf.cast(tf.size(ex["targets"]), tf.int64),
                                                                    (seen, ex)))
                        ds = ds.take_while(lambda seen, ex: seen < max_tokens).map(lambda seen, ex: ex)
                    ds = seqio.DecoderFeatureConverter(pack=False)(ds, lengths)
                    docs = _write_converted(ds, writer, progress, int(vocab.eos_id))
        writer.close()
        progress.update(docs, writer.tokens, force=True)
        meta = {**meta_extra, "num_rows": writer.rows, "num_tokens": writer.tokens,
                "num_documents": docs, "sequence_length": sequence_length, "mode": mode,
                "patch_size": patch_size, "max_tokens": max_tokens, "vocab_size": int(vocab.vocab_size),
                "eos_id": int(vocab.eos_id), "dtypes": {k: v.str for k, v in writer.dtypes.items()},
                "build_seconds": round(time.time() - progress.start, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if out_dir.exists():  # a concurrent build finished first; theirs is equivalent
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, out_dir)
    finally:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _write_packed(ds, writer: _Writer, progress: _Progress, eos_id: int, length: int, scratch: Path,
                  max_tokens: int | None = None) -> int:
    """Documents cut into full rows (written directly) and tails (packed by seqio's converter).

    One tokenization pass: full rows are written as they come, tails are parked in a scratch
    file (bounded memory) and then streamed, in their original order, into the packer.
    """
    scratch.mkdir()
    short_lengths: list[int] = []
    docs = 0
    with open(scratch / "short.bin", "wb") as short_file:
        for flat, lengths in _ragged_pieces(ds, max_tokens):
            docs += len(lengths)
            rows, tails = split_full_rows(flat, lengths, length)
            if len(rows):
                writer.write(rows, np.ones_like(rows), np.broadcast_to(np.arange(length), rows.shape))
            for tail in tails:
                short_file.write(tail.astype(np.int32).tobytes())
                short_lengths.append(len(tail))
            progress.update(docs, writer.tokens)

    def short_pieces():
        tokens = np.fromfile(scratch / "short.bin", dtype=np.int32)
        offset = 0
        for n in short_lengths:
            yield tokens[offset:offset + n]
            offset += n

    for targets, seg, pos in pack_pieces(short_pieces, length):
        writer.write(targets, seg, pos)
        progress.update(docs, writer.tokens)
    shutil.rmtree(scratch)
    return docs


def split_full_rows(flat: np.ndarray, lengths: np.ndarray, length: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Packed mode's first cut: each document's full `length`-token pieces as finished rows (in order)
    and its remainder as a tail for the packer. Shared by the memmap cache and the row store build."""
    ends = np.cumsum(lengths)
    full_rows, tails = [], []
    for end, n in zip(ends, lengths):  # per document: n // L full rows, then the tail
        start, n_full = end - n, n // length
        if n_full:
            full_rows.append(flat[start:start + n_full * length].reshape(n_full, length))
        if n % length:
            tails.append(flat[start + n_full * length:end])
    rows = np.concatenate(full_rows) if full_rows else np.zeros((0, length), flat.dtype)
    return rows, tails


def pack_pieces(pieces, length: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """seqio's packer (`DecoderFeatureConverter(pack=True)`) over the pieces `pieces()` yields, in order:
    (targets, segment ids, positions) batches. The one packer: the memmap cache and the row store's
    tail task both call it, so their packed rows agree."""
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio
    import tensorflow as tf

    short = tf.data.Dataset.from_generator(
        lambda: ({"targets": p} for p in pieces()), output_signature={"targets": tf.TensorSpec([None], tf.int32)})
    packed = seqio.DecoderFeatureConverter(pack=True)(short, {"targets": length})
    for batch in packed.batch(BATCH_ROWS).as_numpy_iterator():
        yield converted_arrays(batch)


def converted_arrays(batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, segment ids, positions) of a feature-converter batch; pack=False rows carry no segments,
    so one piece per row makes the segment the non-padding prefix."""
    targets = batch["decoder_target_tokens"]
    if "decoder_segment_ids" in batch:
        return targets, batch["decoder_segment_ids"], batch["decoder_positions"]
    return targets, *padded_segments(targets)


def padded_segments(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seg = (targets != 0).astype(np.int32)
    return seg, np.where(seg > 0, np.arange(targets.shape[1]), 0)


def concat_rows(stream: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concat mode's rows from a piece of the token stream that starts on a row boundary: full rows are
    one segment with positions 0..L-1; a final partial row (the stream's end) is zero-padded, its padding
    segment 0 with zero weight."""
    full = len(stream) // length
    rows = stream[: full * length].reshape(full, length)
    seg, pos = np.ones_like(rows), np.broadcast_to(np.arange(length), rows.shape)
    if len(stream) % length:
        row = np.zeros((1, length), stream.dtype)
        row[0, : len(stream) - full * length] = stream[full * length:]
        row_seg = (row != 0).astype(seg.dtype)
        rows = np.concatenate([rows, row])
        seg = np.concatenate([seg, row_seg])
        pos = np.concatenate([pos, np.where(row != 0, np.arange(length), 0)])
    return rows, seg, pos


def _ragged_pieces(ds, max_tokens: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(flat tokens, piece lengths) for ~BATCH_ROWS pieces at a time.

    With `max_tokens`, stops after the first whole piece that reaches the budget (deterministic).
    """
    batches = ds.map(lambda ex: ex["targets"]).ragged_batch(BATCH_ROWS)
    seen = 0
    for rt in batches:  # eager RaggedTensors: flat values + row splits, no per-piece Python objects
        flat, lengths = rt.flat_values.numpy(), np.diff(rt.row_splits.numpy())
        if max_tokens is not None and seen + len(flat) >= max_tokens:
            keep = int(np.searchsorted(np.cumsum(lengths) + seen, max_tokens)) + 1
            yield flat[: int(lengths[:keep].sum())], lengths[:keep]
            return
        seen += len(flat)
        yield flat, lengths


def _write_converted(ds, writer: _Writer, progress: _Progress, eos_id: int, docs_before: int = 0,
                     count_docs: bool = True) -> int:
    """Rows straight from the feature converter; the inputs seqio derives are re-derived on read."""
    docs = 0
    for batch in ds.batch(BATCH_ROWS).as_numpy_iterator():
        targets, seg, pos = converted_arrays(batch)
        writer.write(targets, seg, pos)
        if count_docs:
            docs += int(np.count_nonzero(targets == eos_id))  # every document ends in exactly one EOS
        progress.update(docs_before + docs, writer.tokens)
    return docs


def _write_concat(ds, writer: _Writer, length: int, progress: _Progress, max_tokens: int | None = None) -> int:
    """Join documents (each already ends in EOS) and cut rows of exactly `length` tokens."""
    carry = np.zeros((0,), np.int64)
    docs = 0
    for flat, lengths in _ragged_pieces(ds, max_tokens):
        docs += len(lengths)
        carry = np.concatenate([carry, flat])
        full = len(carry) // length
        for i in range(0, full, BATCH_ROWS):
            writer.write(*concat_rows(carry[i * length:min(i + BATCH_ROWS, full) * length], length))
        carry = carry[full * length:]
        progress.update(docs, writer.tokens)
    if len(carry):  # the tail row is zero-padded; its padding has segment id 0 and zero weight
        writer.write(*concat_rows(carry, length))
    return docs
