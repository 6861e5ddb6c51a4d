"""Corpus sources and the seqio Tasks built on them.

A *source* is a named recipe for raw text (a code directory, JSONL files, or a TFDS dataset). Runs
name sources; the seqio Task for a (source, vocabulary) pair is registered on first use, because
the vocabulary is a run choice. The `register_*` functions are gin-configurable and return the
source name, so a gin file can write

    make_dataset.task = @wiki/register_jsonl_corpus()
    wiki/register_jsonl_corpus.name = 'wiki'
    wiki/register_jsonl_corpus.validation_files = ['../shared/data/wikitext/wikitext_document_level-test.json']

Any seqio Task registered elsewhere (with a "targets" feature) can also be named directly.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import gin

from patch_training.data.paths import wikitext_test_file
from patch_training.errors import UserError

SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class CorpusSource:
    name: str
    kind: str  # "code" | "jsonl" | "tfds"
    options: tuple[tuple[str, Any], ...]

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)


_SOURCES: dict[str, CorpusSource] = {}


def _freeze(v):
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def _register(name: str, kind: str, **options) -> str:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"corpus name {name!r} must be letters, digits, '_' or '-'")
    _SOURCES[name] = CorpusSource(name, kind, tuple(sorted((k, _freeze(v)) for k, v in options.items())))
    return name


@gin.configurable
def register_code_corpus(*, name: str = "code_corpus", root: str | None = None,
                         extensions: Sequence[str] = (".py",), validation_fraction: float = 0.02) -> str:
    """A directory of source files (default: this interpreter's standard library)."""
    return _register(name, "code", root=str(root) if root else None, extensions=tuple(extensions),
                     validation_fraction=float(validation_fraction))


@gin.configurable
def register_jsonl_corpus(*, name: str, train_files: Sequence[str] = (),
                          validation_files: Sequence[str] = (), text_key: str = "text") -> str:
    """Text shards listed per split: JSONL with one `{"text": ...}` object per line, the same compressed
    with zstd (`.jsonl.zst`), or Parquet with a `text_key` column. Files behind URLs (gs://) are read
    only by the row store's build (`python -m patch_training.data.preprocess`)."""
    files = {s: tuple(str(f) for f in fs) for s, fs in (("train", train_files),
                                                       ("validation", validation_files)) if fs}
    if not files:
        raise UserError(f"register_jsonl_corpus({name!r}): give train_files and/or validation_files")
    return _register(name, "jsonl", files=files, text_key=text_key)


@gin.configurable
def register_tfds_corpus(*, name: str, tfds_name: str, text_key: str = "text",
                         split_map: Mapping[str, str] | None = None,
                         tfds_data_dir: str | None = None) -> str:
    """Any TFDS text dataset; `split_map` maps train/validation to the dataset's split names."""
    return _register(name, "tfds", tfds_name=tfds_name, text_key=text_key,
                     split_map=dict(split_map or {"train": "train", "validation": "validation"}),
                     tfds_data_dir=tfds_data_dir)


def get_source(name: str) -> CorpusSource | None:
    return _SOURCES.get(name)


def registered_sources() -> list[str]:
    return sorted(_SOURCES)


# Built-in sources: the stdlib code corpus needs no download; wikitext reads the shared copy.
register_code_corpus()
register_jsonl_corpus(name="wikitext", validation_files=[str(wikitext_test_file())])


# ----------------------------------------------------------------------------------------------
# TFDS builders for a source (TensorFlow imported lazily: the cached path never needs it).

def source_builder(source: CorpusSource, tfds_dir: Path):
    from patch_training.data import tfds_builders
    o = source.opts
    if source.kind == "code":
        return tfds_builders.code_corpus_builder(o["root"], data_dir=tfds_dir, extensions=o["extensions"],
                                                 validation_fraction=o["validation_fraction"])
    if source.kind == "jsonl":
        return tfds_builders.jsonl_corpus_builder(dict(o["files"]), data_dir=tfds_dir,
                                                  text_key=o["text_key"], name=source.name)
    if source.kind == "tfds":
        return tfds_builders.named_tfds_builder(o["tfds_name"], data_dir=o["tfds_data_dir"] or tfds_dir)
    raise AssertionError(source.kind)


def split_name(source: CorpusSource, split: str, builder) -> str:
    """Map our split to the builder's and say clearly when it does not exist."""
    tfds_split = dict(source.opts.get("split_map") or {}).get(split, split)
    if source.kind == "tfds":  # known once prepared; an unprepared dataset is reported afterwards
        available = list(builder.info.splits.keys()) if builder.info.splits else []
    elif source.kind == "jsonl":
        available = list(dict(source.opts["files"]).keys())
    else:
        available = list(SPLITS)
    if available and tfds_split not in available:
        raise UserError(f"corpus {source.name!r} has no split {split!r} (available: {', '.join(available)})")
    return tfds_split


# ----------------------------------------------------------------------------------------------
# seqio Tasks

def split_into_chunks(dataset, sequence_length: Mapping[str, int] | None = None, output_features=None):
    """Cut each `targets` sequence into pieces of at most the target length (nothing is dropped).

    seqio's packing would otherwise trim a long document to one row and lose the rest of it.
    """
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import tensorflow as tf

    if not sequence_length or not sequence_length.get("targets"):
        return dataset
    length = int(sequence_length["targets"])

    def cut(ex):
        tokens = ex["targets"]
        n = tf.shape(tokens)[0]
        pieces = tf.RaggedTensor.from_row_starts(tokens, tf.range(0, n, length))
        return tf.data.Dataset.from_tensor_slices({"targets": pieces})

    return dataset.flat_map(cut).map(lambda ex: {"targets": ex["targets"]})


def seqio_task_for(source_name: str, vocab, vocab_fingerprint: str, tfds_dir: Path):
    """Register (once) and return the seqio Task that tokenizes `source_name` with `vocab`."""
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio

    source = get_source(source_name)
    if source is None:
        raise UserError(f"unknown corpus/task {source_name!r}; registered corpora: "
                        f"{', '.join(registered_sources())}")
    builder = source_builder(source, tfds_dir)
    tag = hashlib.sha256(f"{vocab_fingerprint}|{tfds_dir}|{source.options}".encode()).hexdigest()[:10]
    task_name = f"{source_name}__{tag}"
    if task_name in seqio.TaskRegistry.names():
        return seqio.get_mixture_or_task(task_name), builder

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
        return builder.as_dataset(split=split_name(source, split, builder), shuffle_files=shuffle_files,
                                  read_config=_read_config(seed))

    preprocessors = [
        functools.partial(seqio.preprocessors.rekey, key_map={"targets": source.opts.get("text_key", "text")}
                          if source.kind == "tfds" else {"targets": "text"}),
        seqio.preprocessors.tokenize,
        seqio.preprocessors.append_eos,
        split_into_chunks,
    ]
    task = seqio.Task(
        task_name,
        source=seqio.FunctionDataSource(dataset_fn, splits=SPLITS if source.kind != "tfds"
                                        else tuple(dict(source.opts["split_map"]).keys())),
        output_features={"targets": seqio.Feature(vocab, add_eos=True, dtype=_tf_int32())},
        preprocessors=preprocessors,
        shuffle_buffer_size=None,
    )
    seqio.TaskRegistry.add_provider(task_name, task)
    return task, builder


def _tf_int32():
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import tensorflow as tf
    return tf.int32


def _read_config(seed):
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import tensorflow_datasets as tfds
    return tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=1)
