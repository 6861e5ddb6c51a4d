"""Prompt/answer sources and the seqio Tasks built on them (Case2Code rows, instruction sets).

A *prompt/answer source* is a named set of JSONL files per split whose rows carry a prompt and an
answer (by default the keys `prompt` and `output`, the synthesis contract and the official
Case2Code format). Like the corpus sources in `patch_training.data.tasks`, the `register_*`
functions are gin-configurable and return the source name; the seqio Task for a (source,
vocabulary) pair is registered on first use, because the vocabulary belongs to the checkpoint:

    TRAIN_TASK = @c2c/register_case2code_dir()
    c2c/register_case2code_dir.name = 'case2code'
    c2c/register_case2code_dir.data_dir = 'runs/demo/case2code_data'

The Task's features are `inputs` (the prompt, no EOS) and `targets` (the answer, then EOS).
Malformed rows (bad JSON, a missing or non-string prompt/answer, an empty answer) are counted
and reported, never fatal.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import gin

from patch_training.data.corpora import RowReport, check_jsonl_files, fingerprint_files, iter_jsonl_objects
from patch_training.errors import UserError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class PromptAnswerSource:
    name: str
    files: tuple[tuple[str, tuple[str, ...]], ...]   # split -> JSONL paths
    prompt_key: str = "prompt"
    output_key: str = "output"

    def split_files(self, split: str) -> list[Path]:
        files = dict(self.files)
        if split not in files:
            raise UserError(f"prompt/answer task {self.name!r} has no split {split!r} "
                            f"(available: {', '.join(files) or 'none'})")
        return check_jsonl_files(files[split], f"task {self.name!r} split {split!r}")

    def content_key(self, split: str) -> str:
        """Changes whenever the split's files change (their bytes), so stale row caches never match."""
        return fingerprint_files(Path("/"), [p.absolute() for p in self.split_files(split)],
                                 self.prompt_key, self.output_key)


_SOURCES: dict[str, PromptAnswerSource] = {}


def _register(name: str, files: Mapping[str, Sequence[str]], prompt_key: str, output_key: str) -> str:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"task name {name!r} must be letters, digits, '_' or '-'")
    kept = tuple((s, tuple(str(f) for f in fs)) for s, fs in files.items() if fs)
    if not kept:
        raise UserError(f"task {name!r}: no JSONL files given for any split")
    unknown = [s for s, _ in kept if s not in SPLITS]
    if unknown:
        raise UserError(f"task {name!r}: unknown split(s) {unknown} (expected {SPLITS})")
    _SOURCES[name] = PromptAnswerSource(name, kept, prompt_key, output_key)
    return name


@gin.configurable
def register_prompt_answer_task(*, name: str, train_files: Sequence[str] = (),
                                validation_files: Sequence[str] = (), test_files: Sequence[str] = (),
                                prompt_key: str = "prompt", output_key: str = "output") -> str:
    """Any JSONL of `{"prompt", "output"}` rows (key names configurable), listed per split."""
    return _register(name, {"train": train_files, "validation": validation_files, "test": test_files},
                     prompt_key, output_key)


@gin.configurable
def register_case2code_dir(*, name: str = "case2code", data_dir: str = gin.REQUIRED,
                           prompt_key: str = "prompt", output_key: str = "output") -> str:
    """A directory in the synthesis layout: `train.jsonl`, `validation.jsonl`, `test.jsonl` (those present)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"Case2Code data directory not found: {root}")
    files = {s: [str(root / f"{s}.jsonl")] for s in SPLITS if (root / f"{s}.jsonl").is_file()}
    if "train" not in files and "validation" not in files:
        raise UserError(f"{root} holds neither train.jsonl nor validation.jsonl")
    return _register(name, files, prompt_key, output_key)


def get_source(name: str) -> PromptAnswerSource | None:
    return _SOURCES.get(name)


def require_source(name: str) -> PromptAnswerSource:
    source = _SOURCES.get(name)
    if source is None:
        raise UserError(f"unknown prompt/answer task {name!r}; registered: {', '.join(sorted(_SOURCES)) or 'none'}")
    return source


def iter_prompt_answer_rows(source: PromptAnswerSource, split: str,
                            report: RowReport) -> Iterator[tuple[str, str, str]]:
    """(where, prompt, answer) for every usable row; the rest is counted in `report`."""
    pk, ok = source.prompt_key, source.output_key
    for path in source.split_files(split):
        for where, _, row in iter_jsonl_objects(Path(path), report):
            missing = [k for k in (pk, ok) if k not in row]
            if missing:
                report.bad(where, f"no {' or '.join(repr(k) for k in missing)} field")
                continue
            prompt, answer = row[pk], row[ok]
            if not isinstance(prompt, str) or not isinstance(answer, str):
                report.bad(where, f"{pk!r} and {ok!r} must be strings")
                continue
            if not answer.strip():
                report.bad(where, f"empty {ok!r}")
                continue
            yield where, prompt, answer


def seqio_task_for(source_name: str, vocab, vocab_fingerprint: str, reports: dict[str, RowReport]):
    """Register (once per source content and vocabulary) and return the seqio Task of a source.

    `reports[split]` collects the malformed-row counts while the Task's data is read.
    """
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio
    import tensorflow as tf

    source = require_source(source_name)
    tag = hashlib.sha256(f"{vocab_fingerprint}|{source}".encode()).hexdigest()[:10]
    task_name = f"pa_{source_name}__{tag}"
    if task_name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(task_name)  # re-registered so `reports` is this build's

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
        def rows():
            report = reports.setdefault(split, RowReport())
            for _, prompt, answer in iter_prompt_answer_rows(source, split, report):
                yield {"inputs": prompt, "targets": answer}
        return tf.data.Dataset.from_generator(
            rows, output_signature={"inputs": tf.TensorSpec([], tf.string),
                                    "targets": tf.TensorSpec([], tf.string)})

    task = seqio.Task(
        task_name,
        source=seqio.FunctionDataSource(dataset_fn, splits=tuple(s for s, _ in source.files)),
        output_features={
            "inputs": seqio.Feature(vocab, add_eos=False, dtype=tf.int32),
            # The answer ends in EOS: the model learns where to stop.
            "targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32),
        },
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        shuffle_buffer_size=None,
    )
    seqio.TaskRegistry.add_provider(task_name, task)
    return task


def describe(source_name: str) -> dict[str, Any]:
    source = require_source(source_name)
    return {"name": source.name, "files": {s: list(fs) for s, fs in source.files},
            "prompt_key": source.prompt_key, "output_key": source.output_key}
