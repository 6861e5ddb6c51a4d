"""`make_dataset`: the one entry point the trainer calls (gin-configurable).

It resolves the corpus and vocabulary, builds (once) the row cache keyed by a hash of everything
that affects the rows, and returns a `StepIndexedDataset`. A cache hit touches no TensorFlow.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import gin

from patch_training.data import tasks as tasks_lib
from patch_training.data import vocab as vocab_lib
from patch_training.data.paths import default_cache_dir
from patch_training.data.step_dataset import META_FILE, StepIndexedDataset
from patch_training.errors import UserError

# Bump when the row format or the preprocessing recipe changes: old caches then stop matching.
# 2: local corpora's documents in file-and-line order (the row store's order), no longer TFDS's hash order.
ROWS_FORMAT_VERSION = 2


def _mode(pack: bool, concat: bool, patch_size: int, sequence_length: int) -> str:
    if patch_size < 1:
        raise UserError(f"patch_size must be >= 1, got {patch_size}")
    if sequence_length < 2:
        raise UserError(f"sequence_length must be >= 2, got {sequence_length}")
    if sequence_length % patch_size:
        raise UserError(f"patch_size K={patch_size} does not divide sequence_length={sequence_length} "
                        f"(patch rows hold K*T tokens)")
    if patch_size > 1 or concat:
        return "concat"
    return "packed" if pack else "padded"


def one_line_errors(configured):
    """Re-raise a UserError from a gin-wrapped call without gin's appended second line.

    gin re-raises errors as a proxy whose message gains "In call to configurable ..."; a user
    mistake must stay one line. The proxy keeps the original as its `__context__`.
    """
    @functools.wraps(configured)
    def call(*args, **kwargs):
        try:
            return configured(*args, **kwargs)
        except UserError as e:
            original = e.__context__ if isinstance(e.__context__, UserError) else e
            raise UserError(str(original).split("\n")[0]) from None
    return call


@gin.configurable("make_dataset")
def _make_dataset(*, task: str, split: str = "train", sequence_length: int, vocab: Any = None,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None, pack: bool = True,
                 patch_size: int = 1, concat: bool = False, shuffle: bool | None = None,
                 max_tokens: int | None = None, row_stores: Mapping[str, str] | None = None) -> StepIndexedDataset:
    """Rows for `task`/`split` as a `StepIndexedDataset`.

    task: a registered corpus (`code_corpus`, `wikitext`, or one from `register_*_corpus`).
    sequence_length: tokens per row; in patch mode (patch_size K > 1) that is K*T and K must divide it.
    vocab: a seqio vocabulary, a vocab spec dict, a `vocab.json`/`tokenizer.model` path, or None
      for `get_vocabulary()` (gin).
    pack: seqio packing with segment ids and positions (token mode); False pads one piece per row.
    patch_size: K > 1 gives patch rows: documents concatenated with EOS separators, one segment.
    concat: token-mode rows cut from the concatenated stream (like patch rows, with K=1).
    shuffle: epoch-wise permutation by `seed`; default True for train, False otherwise.
    max_tokens: keep only the leading documents (row-sized pieces when pack=False) up to about this
      many tokens, for quick runs and benchmarks on a big corpus; part of the cache key.
    row_stores: corpus name -> row store root (local dir, a gcsfuse mount, or gs://) built by
      `python -m patch_training.data.preprocess`. A corpus named here is read from its store, by random
      access, only the rows a host needs; a missing or mismatched store is one line with the command
      that builds it. Corpora not named keep the local memmap cache.
    """
    if max_tokens is not None and max_tokens <= 0:
        raise UserError(f"max_tokens must be positive, got {max_tokens}")
    if split not in tasks_lib.SPLITS:
        raise UserError(f"split must be one of {tasks_lib.SPLITS}, got {split!r}")
    mode = _mode(pack, concat, int(patch_size), int(sequence_length))
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    vocab_obj = None if isinstance(vocab, (dict, str, os.PathLike, type(None))) else vocab
    spec = vocab_lib.as_spec(vocab)
    vocab_fp = vocab_lib.spec_fingerprint(spec)
    source = tasks_lib.get_source(task)
    if source is None:
        raise UserError(f"unknown corpus/task {task!r}; registered corpora: "
                        f"{', '.join(tasks_lib.registered_sources())}")
    tfds_dir = cache_root / "tfds"
    if task in (row_stores or {}):
        if max_tokens is not None:
            raise UserError(f"corpus {task!r} is read from a row store, which holds the whole corpus: "
                            f"unset max_tokens (DATA_MAX_TOKENS) or the store for it")
        from patch_training.data import row_store
        return row_store.open_matching_store(
            row_stores[task], rows_name(task, split, mode, int(patch_size), int(sequence_length)),
            row_key_parts(source, split, vocab_fp, int(sequence_length), mode, int(patch_size), max_tokens,
                          tfds_dir, content=None),
            content=functools.partial(store_content, source),
            seed=seed, shuffle=(split == "train") if shuffle is None else shuffle,
            build_flags=build_flags(task, split, int(sequence_length), int(patch_size), pack, concat))
    key_parts = row_key_parts(source, split, vocab_fp, int(sequence_length), mode, int(patch_size), max_tokens,
                              tfds_dir)
    key = rows_fingerprint(key_parts)
    rows_dir = cache_root / "rows" / f"{rows_name(task, split, mode, int(patch_size), int(sequence_length))}-{key}"
    if not (rows_dir / META_FILE).is_file():
        # Several processes on one machine (local multi-host runs) may ask at once: one builds.
        with build_lock(cache_root / "locks" / f"{rows_dir.name}.lock"):
            if not (rows_dir / META_FILE).is_file():
                _build(source, split, spec, vocab_obj, vocab_fp, tfds_dir, rows_dir, key_parts,
                       int(sequence_length), mode, int(patch_size), key)
    ds = StepIndexedDataset(rows_dir, seed=seed, shuffle=(split == "train") if shuffle is None else shuffle)
    _report_malformed(ds)
    return ds


make_dataset = one_line_errors(_make_dataset)


@contextlib.contextmanager
def build_lock(path: Path):
    """An exclusive file lock around building a shared cache entry (processes wait, then reuse it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def row_key_parts(source: tasks_lib.CorpusSource, split: str, vocab_fp: str, length: int, mode: str,
                  patch_size: int, max_tokens: int | None, tfds_dir: Path, content: str | None = "compute") -> dict:
    """Everything that shapes a row set: the memmap cache and the row store are keyed by the same parts.

    `content=None` leaves the corpus content out (a host that cannot read the corpus: a store's record of
    it then stands).
    """
    return {"format": ROWS_FORMAT_VERSION, "task": source.name, "source": source.kind,
            "options": json.dumps(source.opts, sort_keys=True, default=str),
            "content": content_key(source) if content == "compute" else content, "split": split,
            "vocab": vocab_fp, "length": int(length), "mode": mode, "patch_size": int(patch_size),
            "tfds_dir": str(tfds_dir) if source.kind == "tfds" else "",
            "max_tokens": None if max_tokens is None else int(max_tokens)}


def rows_fingerprint(key_parts: dict) -> str:
    return hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]


def rows_name(task: str, split: str, mode: str, patch_size: int, length: int) -> str:
    """A row set's directory name (the memmap cache appends its fingerprint; a store checks it in meta)."""
    return f"{task}-{split}-{mode}{patch_size}-L{length}"


def build_flags(task: str, split: str, length: int, patch_size: int, pack: bool, concat: bool) -> list[str]:
    """The preprocess flags that build exactly this row set (named in the missing-store message)."""
    flags = [f"--task={task}", f"--split={split}", f"--sequence_length={length}", f"--patch_size={patch_size}"]
    if concat:
        flags.append("--concat")
    if not pack:
        flags.append("--no_pack")
    return flags


def local_corpus_files(source: tasks_lib.CorpusSource) -> tuple[Path, list[Path], tuple] | None:
    """(root, files, options hashed with them) of a corpus on the local filesystem; None for corpora behind
    URLs or TFDS, whose content key reads no file bytes anyway."""
    from patch_training.data import corpora
    o = source.opts
    if source.kind == "code":
        root = Path(o["root"]) if o["root"] else corpora.default_code_root()
        return root, corpora.list_corpus_files(root, o["extensions"]), (o["validation_fraction"],)
    if source.kind == "jsonl":
        names = [f for _, fs in o["files"] for f in fs]
        if any(corpora.is_url(f) for f in names):
            return None
        return Path("/"), [p for _, fs in o["files"] for p in
                           corpora.check_jsonl_files(fs, f"corpus {source.name!r}")], ()
    return None


def content_key(source: tasks_lib.CorpusSource) -> str:
    """What the corpus holds now: file contents for local corpora (so edits rebuild); files behind a URL
    (gs://...) by name, size and modification time, which their store records."""
    from patch_training.data import corpora
    local = local_corpus_files(source)
    if local is not None:
        root, files, extra = local
        return corpora.fingerprint_files(root, files, *extra)
    if source.kind == "jsonl":
        return corpora.fingerprint_remote_files(corpora.expand_urls([f for _, fs in source.opts["files"] for f in fs]))
    return source.opts["tfds_name"]  # a TFDS name+version pins its content


def corpus_stat(source: tasks_lib.CorpusSource) -> str | None:
    """The local corpus files' stat record (`corpora.stat_files`) a row store keeps beside its content hash;
    None for corpora that are not local files."""
    from patch_training.data import corpora
    local = local_corpus_files(source)
    return None if local is None else corpora.stat_files(local[0], local[1])


def store_content(source: tasks_lib.CorpusSource, meta: dict) -> str | None:
    """The corpus content a row store (its `meta.json`) is checked against when a run opens it.

    Hashing a local corpus reads all of it (seconds per GB) before step 1, which a training host should not
    need: as make and rsync decide freshness, files whose names, sizes and mtimes equal the store's record
    from its build are taken to hold what they held then, so the store's recorded content hash stands.
    Otherwise (files touched or edited, or an older store with no record) they are hashed as the memmap cache
    hashes them, and an edit is then a content mismatch. None: the corpus is not readable on this host, so
    the store's record of it stands."""
    from patch_training.data import corpora
    try:
        local = local_corpus_files(source)
        if local is None:
            return content_key(source)
        root, files, extra = local
        if meta.get("content_stat") == corpora.stat_files(root, files):
            return meta.get("key", {}).get("content")
        return corpora.fingerprint_files(root, files, *extra)
    except UserError:
        return None


def _build(source, split, spec, vocab_obj, vocab_fp, tfds_dir, rows_dir, key_parts, length, mode, patch_size,
           key):
    from patch_training.data import materialize, tfds_builders

    vocab_obj = vocab_obj if vocab_obj is not None else vocab_lib.vocab_from_spec(spec)
    task, builder = tasks_lib.seqio_task_for(source.name, vocab_obj, vocab_fp, tfds_dir)
    tfds_split = tasks_lib.split_name(source, split, builder)
    reports = {}
    if source.kind == "tfds":
        if not builder.is_prepared():
            raise UserError(f"TFDS dataset {builder.name} is not prepared in {builder.data_dir}; "
                            f"prepare it first (e.g. `tfds build {builder.name} --data_dir ...`)")
    else:
        with build_lock(rows_dir.parent.parent / "locks" / f"tfds-{builder.name}-{builder.builder_config.name}.lock"):
            reports = tfds_builders.prepare(builder)
    report = reports.get(tfds_split)
    materialize.materialize(
        task, builder, tfds_split, split, sequence_length=length, mode=mode, patch_size=patch_size,
        vocab=vocab_obj, out_dir=rows_dir, max_tokens=key_parts["max_tokens"],
        meta_extra={"task": source.name, "split": split, "vocab_spec": spec, "key": key_parts, "fingerprint": key,
                    "row_report": report.to_dict() if report else None})


def _report_malformed(ds: StepIndexedDataset) -> None:
    from patch_training.data.corpora import RowReport
    report = ds.meta.get("row_report")
    if report:
        RowReport.from_dict(report).log(f"corpus {ds.meta['task']}/{ds.meta['split']}")
