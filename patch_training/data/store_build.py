"""Building a row store with Apache Beam: tokenize in parallel, then cut rows in parallel.

Two Beam pipelines with a small, pure planning step between them (any runner: the DirectRunner in
several processes here, Dataflow / Flink / Spark through Beam's own options):

1. **Tokenize** each *unit* of the corpus (a text shard, a group of code files, or one of a TFDS split's
   even sub-splits) into `<root>/.tokens/<id>/unit-NNNNN.{bin,lengths.npy,json}`: the documents' tokens
   with their EOS, back to back, and each document's length. A unit whose `.json` exists is done.
2. **Plan** (driver): from the units' lengths, which global rows each output shard holds. Documents keep
   the corpus order (unit by unit, line by line), the order the memmap cache reads them in, so rows are
   the same as the cache's:
   - concat: row r is tokens [rL, (r+1)L) of the joined stream (the last row zero-padded);
   - padded: one row per piece of at most L tokens of a document;
   - packed: first every document's full L-token pieces, then its tails packed by seqio's packer in one
     task (sequential, as the cache packs them; only validation sets use packed rows at pod scale).
3. **Write** each shard `rows-NNNNN.array_record` (a local temp file moved or copied into place) with a
   `.json` beside it; a shard whose `.json` exists is skipped, so a rerun resumes. `meta.json` comes last.

Beam is imported only here and only inside functions: training never needs it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from typing import Any, Iterator, Sequence

import numpy as np

from patch_training.data import corpora, row_store
from patch_training.data import materialize as mat
from patch_training.data.tasks import CorpusSource, SPLITS
from patch_training.errors import UserError

CODE_FILES_PER_UNIT = 200
DEFAULT_ROWS_PER_SHARD = 8192


@dataclasses.dataclass(frozen=True)
class Unit:
    index: int
    kind: str          # "file" | "code" | "tfds"
    ref: tuple         # file: (path,); code: (root, rel paths...); tfds: (name, data_dir, subsplit)


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """Everything a worker needs (picklable): what to read, how to tokenize, where to write."""
    source: CorpusSource
    vocab_spec: dict
    length: int
    mode: str
    tokens_dir: str
    out_dir: str
    token_dtype: str


@dataclasses.dataclass(frozen=True)
class ShardTask:
    index: int
    kind: str                    # "rows" (a global row range) | "tails" (packed mode's packed tails)
    first_row: int = 0
    stop_row: int = 0


# ---------------------------------------------------------------------------------------------
# Units and their documents

def list_units(source: CorpusSource, split: str, tfds_units: int = 16) -> list[Unit]:
    """The corpus split as an ordered list of units; their documents in order are the corpus order."""
    o = source.opts
    if source.kind == "jsonl":
        files = dict(o["files"])
        if split not in files:
            raise UserError(f"corpus {source.name!r} has no split {split!r} (available: {', '.join(files)})")
        return [Unit(i, "file", (f,)) for i, f in enumerate(corpora.expand_urls(files[split]))]
    if source.kind == "code":
        from pathlib import Path
        root = Path(o["root"]) if o["root"] else corpora.default_code_root()
        files = corpora.split_files(root, corpora.list_corpus_files(root, o["extensions"]),
                                    o["validation_fraction"])[split]
        rel = [str(f.relative_to(root)) for f in files]
        return [Unit(i, "code", (str(root), *rel[a:a + CODE_FILES_PER_UNIT]))
                for i, a in enumerate(range(0, len(rel), CODE_FILES_PER_UNIT))]
    if source.kind == "tfds":
        from patch_training.tf_quiet import ensure_tensorflow_imported
        ensure_tensorflow_imported()
        import tensorflow_datasets as tfds
        tfds_split = dict(o["split_map"]).get(split, split)
        subsplits = tfds.even_splits(tfds_split, n=tfds_units)
        return [Unit(i, "tfds", (o["tfds_name"], o["tfds_data_dir"], s)) for i, s in enumerate(subsplits)]
    raise AssertionError(source.kind)


def unit_documents(unit: Unit, source: CorpusSource, report: corpora.RowReport) -> Iterator[str]:
    text_key = source.opts.get("text_key", "text")
    if unit.kind == "file":
        for _, text in corpora.iter_text_rows(unit.ref[0], report, text_key):
            yield text
    elif unit.kind == "code":
        from pathlib import Path
        root = Path(unit.ref[0])
        for _, text in corpora.iter_code_documents(root, [root / r for r in unit.ref[1:]], report):
            yield text
    else:
        from patch_training.data.tfds_builders import named_tfds_builder
        name, data_dir, subsplit = unit.ref
        builder = named_tfds_builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            raise UserError(f"TFDS dataset {name} is not prepared in {builder.data_dir}")
        import tensorflow_datasets as tfds
        ds = builder.as_dataset(split=subsplit, shuffle_files=False,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1))
        for ex in tfds.as_numpy(ds):
            report.total += 1
            yield ex[text_key].decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Stage 1: tokenize a unit

@functools.lru_cache(maxsize=4)
def _vocab(spec_json: str):
    # Not the seqio vocabulary: that would import TensorFlow into every worker process (~0.4 GB each).
    from patch_training.data.vocab import encoder_from_spec
    return encoder_from_spec(json.loads(spec_json))


def _unit_path(spec: BuildSpec, index: int, suffix: str) -> str:
    return row_store.join(spec.tokens_dir, f"unit-{index:05d}{suffix}")


def tokenize_unit(unit: Unit, spec: BuildSpec) -> dict:
    """Tokens (+EOS) of every document of `unit`, written once; a finished unit is read back, not redone."""
    done = _unit_path(spec, unit.index, ".json")
    if row_store.exists(done):
        return json.loads(row_store.read_text(done))
    vocab = _vocab(json.dumps(spec.vocab_spec, sort_keys=True))
    eos, dtype = int(vocab.eos_id), np.dtype(spec.token_dtype)
    report, lengths, t0 = corpora.RowReport(), [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "tokens.bin")
        with open(local, "wb") as f:
            for text in unit_documents(unit, spec.source, report):
                ids = np.asarray(vocab.encode(text) + [eos], dtype)
                f.write(ids.tobytes())
                lengths.append(len(ids))
        row_store.put_file(local, _unit_path(spec, unit.index, ".bin"))
        buf = io.BytesIO()
        np.save(buf, np.asarray(lengths, np.int64))
        with open(os.path.join(tmp, "lengths.npy"), "wb") as f:
            f.write(buf.getvalue())
        row_store.put_file(os.path.join(tmp, "lengths.npy"), _unit_path(spec, unit.index, ".lengths.npy"))
    stats = {"unit": unit.index, "documents": len(lengths), "tokens": int(sum(lengths)),
             "report": report.to_dict(), "seconds": round(time.time() - t0, 3)}
    print(f"[preprocess] unit {unit.index}: {len(lengths)} docs, {stats['tokens']} tokens, "
          f"{stats['tokens'] / max(stats['seconds'], 1e-9) / 1e6:.2f}M tok/s", file=sys.stderr, flush=True)
    row_store.write_text(done, json.dumps(stats))  # last: its presence means the unit is complete
    return stats


def _read_lengths(spec: BuildSpec, index: int) -> np.ndarray:
    path = _unit_path(spec, index, ".lengths.npy")
    with corpora.open_binary(path) as f:
        return np.load(io.BytesIO(f.read()))


def _read_tokens(spec: BuildSpec, index: int, start: int, stop: int) -> np.ndarray:
    """Tokens [start, stop) of a unit's stream, by seeking (a shard never loads whole units)."""
    dtype = np.dtype(spec.token_dtype)
    with corpora.open_binary(_unit_path(spec, index, ".bin")) as f:
        f.seek(start * dtype.itemsize)
        data = f.read((stop - start) * dtype.itemsize)
    return np.frombuffer(data, dtype).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Stage 2: plan (pure)

def piece_table(lengths: np.ndarray, length: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, size) in the unit's stream of each row-forming piece, in order: padded mode's pieces of
    at most L tokens, or packed mode's full L-token pieces (tails are packed apart)."""
    lengths = np.asarray(lengths, np.int64)
    doc_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    per_doc = -(-lengths // length) if mode == "padded" else lengths // length
    doc = np.repeat(np.arange(len(lengths)), per_doc)
    k = np.arange(len(doc)) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
    starts = doc_starts[doc] + k * length
    sizes = np.minimum(length, lengths[doc] - k * length)
    return starts, sizes


def plan_shards(mode: str, length: int, unit_rows: Sequence[int], rows_per_shard: int) -> list[ShardTask]:
    """Shard tasks over the global rows (`unit_rows`: rows each unit contributes; concat: one entry, the
    total); packed mode ends with the tails task."""
    total = int(sum(unit_rows))
    tasks = [ShardTask(i, "rows", a, min(a + rows_per_shard, total))
             for i, a in enumerate(range(0, total, rows_per_shard))]
    if mode == "packed":
        tasks.append(ShardTask(len(tasks), "tails"))
    return tasks


# ---------------------------------------------------------------------------------------------
# Stage 3: write a shard

@dataclasses.dataclass(frozen=True)
class Layout:
    """What every shard task needs to find its rows: per-unit token counts and row counts."""
    unit_tokens: tuple[int, ...]
    unit_rows: tuple[int, ...]


def _shard_rows(task: ShardTask, spec: BuildSpec, layout: Layout) -> Iterator[tuple[np.ndarray, ...]]:
    L = spec.length
    if task.kind == "tails":
        def tails():
            for u in range(len(layout.unit_tokens)):
                flat = _read_tokens(spec, u, 0, layout.unit_tokens[u])
                yield from (t.astype(np.int32) for t in mat.split_full_rows(flat, _read_lengths(spec, u), L)[1])
        yield from mat.pack_pieces(tails, L)
        return
    if spec.mode == "concat":
        stream_starts = np.concatenate([[0], np.cumsum(layout.unit_tokens)]).astype(np.int64)
        a, b = task.first_row * L, min(task.stop_row * L, int(stream_starts[-1]))
        parts = []
        for u in range(len(layout.unit_tokens)):
            lo, hi = max(a, stream_starts[u]), min(b, stream_starts[u + 1])
            if lo < hi:
                parts.append(_read_tokens(spec, u, lo - stream_starts[u], hi - stream_starts[u]))
        yield mat.concat_rows(np.concatenate(parts), L)
        return
    row_starts = np.concatenate([[0], np.cumsum(layout.unit_rows)]).astype(np.int64)
    for u in range(len(layout.unit_rows)):
        lo, hi = max(task.first_row, row_starts[u]), min(task.stop_row, row_starts[u + 1])
        if lo >= hi:
            continue
        starts, sizes = piece_table(_read_lengths(spec, u), L, spec.mode)
        starts, sizes = starts[lo - row_starts[u]:hi - row_starts[u]], sizes[lo - row_starts[u]:hi - row_starts[u]]
        base = int(starts[0])
        span = _read_tokens(spec, u, base, int(starts[-1] + sizes[-1]))
        rows = np.zeros((len(starts), L), np.int64)
        for i, (s, n) in enumerate(zip(starts - base, sizes)):
            rows[i, :n] = span[s:s + n]
        if spec.mode == "padded":
            yield (rows, *mat.padded_segments(rows))
        else:
            yield rows, np.ones_like(rows), np.broadcast_to(np.arange(L), rows.shape)


def write_shard(task: ShardTask, spec: BuildSpec, layout: Layout) -> dict:
    """One shard file of rows; a shard whose `.json` exists is complete and is not rewritten."""
    name = row_store.shard_name(task.index)
    done = row_store.join(spec.out_dir, name + ".json")
    if row_store.exists(done):
        return json.loads(row_store.read_text(done))
    from array_record.python.array_record_module import ArrayRecordWriter
    dtypes = list(mat.stored_dtypes(np.dtype(spec.token_dtype), spec.length).items())
    rows = tokens = 0
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        writer = ArrayRecordWriter(local, row_store.WRITER_OPTIONS)
        for targets, seg, pos in _shard_rows(task, spec, layout):
            for record in row_store.encode_rows({"targets": targets, "segment_ids": seg, "positions": pos}, dtypes):
                writer.write(record)
            rows += len(targets)
            tokens += int(np.count_nonzero(targets))
        writer.close()
        row_store.put_file(local, row_store.join(spec.out_dir, name))
    stats = {"file": name, "rows": rows, "tokens": tokens}
    row_store.write_text(done, json.dumps(stats))
    return stats


# ---------------------------------------------------------------------------------------------
# Driver

def _run(items: list, fn, pipeline_args: Sequence[str], label: str) -> None:
    """`fn` over `items` on Beam (results land in files, which any runner can hand back)."""
    if not items:
        return
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as p:
        _ = (p | f"{label}/create" >> beam.Create(items) | f"{label}/spread" >> beam.Reshuffle()
             | f"{label}/run" >> beam.Map(fn))


def default_pipeline_args(args: Sequence[str], workers: int) -> list[str]:
    """The DirectRunner in `workers` processes unless the caller names a runner or a running mode."""
    args = list(args)
    if not any(a.startswith("--runner") for a in args) or any("DirectRunner" in a for a in args):
        if not any(a.startswith("--direct_running_mode") for a in args):
            args.append("--direct_running_mode=multi_processing")
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={workers}")
    return args


def build_store(*, root: str, task: str, split: str, sequence_length: int, patch_size: int = 1,
                pack: bool = True, concat: bool = False, vocab: Any = None, cache_dir: str | None = None,
                rows_per_shard: int = DEFAULT_ROWS_PER_SHARD, tfds_units: int = 16,
                pipeline_args: Sequence[str] = (), workers: int = 2) -> str:
    """Build (or finish) the row set under `root`; returns its directory. Keyed like the memmap cache."""
    from pathlib import Path

    from patch_training.data import factory, tasks as tasks_lib, vocab as vocab_lib
    from patch_training.data.paths import default_cache_dir
    if split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {split!r}")
    mode = factory._mode(pack, concat, int(patch_size), int(sequence_length))
    source = tasks_lib.get_source(task)
    if source is None:
        raise UserError(f"unknown corpus {task!r}; registered corpora: {', '.join(tasks_lib.registered_sources())}")
    spec_dict = vocab_lib.as_spec(vocab)
    vocab_fp = vocab_lib.spec_fingerprint(spec_dict)
    tfds_dir = (Path(cache_dir) if cache_dir else default_cache_dir()) / "tfds"
    # Stat before hashing: a file edited in between then fails the stat check at open and is hashed there.
    content_stat = factory.corpus_stat(source)
    key_parts = factory.row_key_parts(source, split, vocab_fp, int(sequence_length), mode, int(patch_size), None,
                                      tfds_dir)
    fingerprint = factory.rows_fingerprint(key_parts)
    out_dir = row_store.join(str(root), factory.rows_name(task, split, mode, int(patch_size), int(sequence_length)))
    meta = row_store.read_meta(out_dir)
    if meta is not None:
        if row_store.store_mismatch(meta.get("key", {}), key_parts):
            raise UserError(f"{out_dir} already holds a row store of other data; remove it or choose another --out")
        print(f"[preprocess] {out_dir} is complete ({meta['num_rows']} rows)", file=sys.stderr, flush=True)
        return out_dir
    row_store.makedirs(out_dir)
    build_file = row_store.join(out_dir, "build.json")
    if row_store.exists(build_file) and json.loads(row_store.read_text(build_file))["fingerprint"] != fingerprint:
        raise UserError(f"{out_dir} holds a partial build of other data; remove it or choose another --out")
    row_store.write_text(build_file, json.dumps({"fingerprint": fingerprint, "key": key_parts,
                                                 "rows_per_shard": int(rows_per_shard)}))
    tokens_id = hashlib.sha256(json.dumps([key_parts[k] for k in ("task", "source", "options", "content",
                                                                  "split", "vocab")]).encode()).hexdigest()[:16]
    vocab_obj = _vocab(json.dumps(spec_dict, sort_keys=True))
    spec = BuildSpec(source, spec_dict, int(sequence_length), mode,
                     row_store.join(str(root), ".tokens", f"{task}-{split}-{tokens_id}"), out_dir,
                     mat.token_dtype(vocab_obj.vocab_size).str)
    row_store.makedirs(spec.tokens_dir)
    args = default_pipeline_args(pipeline_args, workers)
    t0 = time.time()
    units = list_units(source, split, tfds_units)
    pending = [u for u in units if not row_store.exists(_unit_path(spec, u.index, ".json"))]
    print(f"[preprocess] tokenizing {len(pending)} of {len(units)} units", file=sys.stderr, flush=True)
    _run(pending, functools.partial(tokenize_unit, spec=spec), args, "tokenize")
    unit_stats = [json.loads(row_store.read_text(_unit_path(spec, u.index, ".json"))) for u in units]
    t_tok = time.time() - t0
    unit_tokens = tuple(int(s["tokens"]) for s in unit_stats)
    if mode == "concat":
        unit_rows = (-(-sum(unit_tokens) // int(sequence_length)),)
    else:
        unit_rows = tuple(len(piece_table(_read_lengths(spec, u.index), int(sequence_length), mode)[0])
                          for u in units)
    layout = Layout(unit_tokens, unit_rows)
    shards = plan_shards(mode, int(sequence_length), unit_rows, int(rows_per_shard))
    pending_shards = [t for t in shards if not row_store.exists(
        row_store.join(out_dir, row_store.shard_name(t.index) + ".json"))]
    print(f"[preprocess] writing {len(pending_shards)} of {len(shards)} shards", file=sys.stderr, flush=True)
    _run(pending_shards, functools.partial(write_shard, spec=spec, layout=layout), args, "write")
    shard_stats = [json.loads(row_store.read_text(row_store.join(out_dir, row_store.shard_name(t.index) + ".json")))
                   for t in shards]
    report = corpora.RowReport()
    for s in unit_stats:
        r = corpora.RowReport.from_dict(s["report"])
        report.total += r.total
        report.malformed += r.malformed
        report.empty += r.empty
        report.examples.extend(r.examples[: max(0, 5 - len(report.examples))])
    first, shard_entries = 0, []
    for s in shard_stats:
        if s["rows"]:
            shard_entries.append({"file": s["file"], "rows": s["rows"], "first_row": first})
        first += s["rows"]
    meta = {"task": task, "split": split, "vocab_spec": spec_dict, "key": key_parts, "fingerprint": fingerprint,
            "content_stat": content_stat,
            "row_report": report.to_dict(), "num_rows": first, "num_tokens": sum(s["tokens"] for s in shard_stats),
            "num_documents": sum(s["documents"] for s in unit_stats), "sequence_length": int(sequence_length),
            "mode": mode, "patch_size": int(patch_size), "max_tokens": None, "vocab_size": int(vocab_obj.vocab_size),
            "eos_id": int(vocab_obj.eos_id),
            "dtypes": {k: v.str for k, v in mat.stored_dtypes(np.dtype(spec.token_dtype), int(sequence_length)).items()},
            "shards": shard_entries, "corpus_tokens": int(sum(unit_tokens)), "tokenize_seconds": round(t_tok, 2),
            "build_seconds": round(time.time() - t0, 2), "pipeline_args": args}
    row_store.write_text(row_store.join(out_dir, row_store.META_FILE), json.dumps(meta, indent=2, default=str) + "\n")
    print(f"[preprocess] {out_dir}: {first} rows of {sequence_length} tokens in {len(shard_entries)} shards, "
          f"{meta['build_seconds']:.1f}s", file=sys.stderr, flush=True)
    return out_dir
