"""Prompt/answer rows for decoder-only fine-tuning: seqio Task -> prefix-LM rows -> row cache.

Each example becomes `prompt tokens + answer tokens + EOS` in one decoder row. seqio's
`PrefixLMFeatureConverter(loss_on_targets_only=True)` concatenates them, packs several examples
per row (segment ids and positions restart per example) and gives loss weight 1 to answer tokens
only. The rows are stored like the pre-training row cache (`patch_training.data.step_dataset`)
plus a `loss_weights` array, so `PromptAnswerDataset` is a `StepIndexedDataset` whose batches
carry the prompt mask: the trainer, its exact resume and its evaluation use it unchanged.

An example longer than the row is never silently cut: it is counted and skipped (reported in one
line), or, with `truncate_prompts=True`, its prompt loses tokens from the left until it fits.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gin
import numpy as np

from case2code_finetune import tasks as tasks_lib
from patch_training.data import vocab as vocab_lib
from patch_training.data.corpora import RowReport
from patch_training.data.factory import build_lock, one_line_errors
from patch_training.data.paths import default_cache_dir
from patch_training.data.step_dataset import META_FILE, STORED, StepIndexedDataset
from patch_training.errors import UserError

log = logging.getLogger(__name__)

ROWS_FORMAT_VERSION = 1
LOSS_WEIGHTS = "loss_weights"
BATCH_ROWS = 256


class PromptAnswerDataset(StepIndexedDataset):
    """A row cache whose rows carry their own loss weights (answer tokens 1, prompt and padding 0)."""

    def __init__(self, directory: str | Path, *, seed: int = 0, shuffle: bool = True):
        super().__init__(directory, seed=seed, shuffle=shuffle)
        n = self.num_rows
        self._weights = (np.memmap(self.directory / f"{LOSS_WEIGHTS}.bin", dtype=np.uint8, mode="r",
                                   shape=(n, self.sequence_length)) if n else
                         np.zeros((0, self.sequence_length), np.uint8))

    def rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        batch = super().rows(ids)
        batch["decoder_loss_weights"] = self._weights[ids].astype(np.float32)
        return batch


def _row_report_line(what: str, meta: dict) -> str | None:
    parts = []
    rep = meta.get("row_report") or {}
    if rep.get("malformed"):
        parts.append(f"skipped {rep['malformed']} malformed of {rep['total']} rows "
                     f"(first: {(rep.get('examples') or ['?'])[0]})")
    if meta.get("too_long") and (meta.get("key") or {}).get("truncate"):
        parts.append(f"skipped {meta['too_long']} rows whose answer alone does not fit in sequence_length="
                     f"{meta['sequence_length']} (longest row {meta['longest_example']} tokens)")
    elif meta.get("too_long"):
        parts.append(f"skipped {meta['too_long']} rows longer than sequence_length="
                     f"{meta['sequence_length']} (longest {meta['longest_example']} tokens; "
                     f"truncate_prompts=True cuts prompts from the left instead)")
    if meta.get("truncated"):
        parts.append(f"cut the prompt of {meta['truncated']} rows from the left to fit "
                     f"sequence_length={meta['sequence_length']}")
    return f"{what}: " + "; ".join(parts) if parts else None


@gin.configurable("make_prompt_answer_dataset")
def _make_prompt_answer_dataset(*, task: str, split: str = "train", sequence_length: int, vocab: Any = None,
                                seed: int = 0, cache_dir: str | os.PathLike | None = None, pack: bool = True,
                                loss_on_targets_only: bool = True, truncate_prompts: bool = False,
                                shuffle: bool | None = None) -> PromptAnswerDataset:
    """Rows of prompt/answer task `task` (see `case2code_finetune.tasks`) as a `PromptAnswerDataset`.

    pack: several examples per row (seqio packing, segment ids); False: one example per row.
    loss_on_targets_only: the prompt mask (False trains on prompt tokens too, e.g. when the rows
      are mixed into pre-training as plain text).
    truncate_prompts: cut over-long prompts from the left instead of skipping the row.
    """
    if split not in tasks_lib.SPLITS:
        raise UserError(f"split must be one of {tasks_lib.SPLITS}, got {split!r}")
    if not isinstance(sequence_length, int) or sequence_length < 2:
        raise UserError(f"sequence_length must be an integer >= 2, got {sequence_length!r}")
    source = tasks_lib.require_source(task)
    source.split_files(split)  # a missing split or file is one line, before any work
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    vocab_obj = None if isinstance(vocab, (dict, str, os.PathLike, type(None))) else vocab
    spec = vocab_lib.as_spec(vocab)
    vocab_fp = vocab_lib.spec_fingerprint(spec)
    key_parts = {"format": ROWS_FORMAT_VERSION, "task": task, "content": source.content_key(split),
                 "split": split, "vocab": vocab_fp, "length": sequence_length, "pack": bool(pack),
                 "loss_on_targets_only": bool(loss_on_targets_only), "truncate": bool(truncate_prompts)}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]
    rows_dir = cache_root / "rows" / f"pa-{task}-{split}-L{sequence_length}-{key}"
    if not (rows_dir / META_FILE).is_file():
        with build_lock(cache_root / "locks" / f"{rows_dir.name}.lock"):
            if not (rows_dir / META_FILE).is_file():
                vocab_obj = vocab_obj if vocab_obj is not None else vocab_lib.vocab_from_spec(spec)
                _build(task, split, vocab_obj, spec, vocab_fp, rows_dir, key_parts, key, sequence_length,
                       pack, loss_on_targets_only, truncate_prompts)
    ds = PromptAnswerDataset(rows_dir, seed=seed, shuffle=(split == "train") if shuffle is None else shuffle)
    line = _row_report_line(f"task {task}/{split}", ds.meta)
    if line:
        print(f"[data] {line}", file=sys.stderr, flush=True)
    return ds


make_prompt_answer_dataset = one_line_errors(_make_prompt_answer_dataset)


def _fit(prompt: np.ndarray, answer: np.ndarray, length: int, truncate: bool) -> tuple[np.ndarray, str]:
    """(prompt to use, "ok" | "truncated" | "too_long") for a row of at most `length` tokens."""
    if len(prompt) + len(answer) <= length:
        return prompt, "ok"
    if truncate and len(answer) < length:
        return prompt[len(prompt) + len(answer) - length:], "truncated"
    return prompt, "too_long"


def _prefix_lm_rows(sequence_length: int):
    """seqio's PrefixLMFeatureConverter with a fixed row length instead of inputs + targets lengths.

    The stock converter sizes the concatenated row as len(inputs) + len(targets) from the task
    feature lengths, which forces a fixed prompt/answer split; a row here is `sequence_length` tokens
    however an example divides them (every example was checked to fit).
    """
    import seqio

    class PrefixLMRows(seqio.PrefixLMFeatureConverter):
        def _concat_task_feature_lengths(self, task_feature_lengths):
            lengths = dict(super()._concat_task_feature_lengths(task_feature_lengths))
            for key in ("targets", "inputs_width", "inputs_width_add_pos"):
                lengths[key] = sequence_length
            return lengths

        def get_model_feature_lengths(self, task_feature_lengths):
            return super().get_model_feature_lengths({"inputs": 0, "targets": sequence_length})

    return PrefixLMRows


def _build(task, split, vocab, spec, vocab_fp, rows_dir: Path, key_parts, key, length, pack,
           loss_on_targets_only, truncate) -> None:
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio
    import tensorflow as tf

    reports: dict[str, RowReport] = {}
    seqio_task = tasks_lib.seqio_task_for(task, vocab, vocab_fp, reports)
    rows_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=rows_dir.parent, prefix=f".{rows_dir.name}."))
    t0 = time.time()
    counts = {"ok": 0, "truncated": 0, "too_long": 0}
    longest = 0
    prompt_tokens = answer_tokens = 0
    try:
        # One tokenization pass in seqio; the length check runs in numpy so every skip is counted.
        scratch_inputs, scratch_targets = [], []
        with tf.device("/cpu:0"):
            ds = seqio_task.get_dataset(None, split=split, shuffle=False, num_epochs=1, use_cached=False)
            last = 0.0
            for i, ex in enumerate(ds.as_numpy_iterator()):
                prompt, answer = ex["inputs"], ex["targets"]
                longest = max(longest, len(prompt) + len(answer))
                prompt, status = _fit(prompt, answer, length, truncate)
                counts[status] += 1
                if status == "too_long":
                    continue
                scratch_inputs.append(prompt.astype(np.int32))
                scratch_targets.append(answer.astype(np.int32))
                prompt_tokens += len(prompt)
                answer_tokens += len(answer)
                if time.time() - last > 5:
                    last = time.time()
                    print(f"[data] {task}/{split}: {i + 1} rows tokenized, "
                          f"{(i + 1) / max(last - t0, 1e-9):.0f} rows/s", file=sys.stderr, flush=True)
            report = reports.get(split, RowReport())
            if not scratch_inputs:
                raise UserError(f"task {task}/{split}: no usable rows ({report.total} read, "
                                f"{report.malformed} malformed, {counts['too_long']} longer than "
                                f"sequence_length={length})")

            def examples():
                for p, a in zip(scratch_inputs, scratch_targets):
                    yield {"inputs": p, "targets": a}

            examples_ds = tf.data.Dataset.from_generator(
                examples, output_signature={"inputs": tf.TensorSpec([None], tf.int32),
                                            "targets": tf.TensorSpec([None], tf.int32)})
            converter = _prefix_lm_rows(length)(pack=pack, loss_on_targets_only=loss_on_targets_only)
            lengths = {"inputs": length, "targets": length}  # each part may take up to the whole row
            num_rows, non_pad, weight_sum = _write(converter(examples_ds, lengths), tmp, length, vocab)
        meta = {"task": task, "split": split, "vocab_spec": spec, "key": key_parts, "fingerprint": key,
                "num_rows": num_rows, "num_tokens": non_pad, "num_documents": counts["ok"] + counts["truncated"],
                "sequence_length": length, "mode": "packed" if pack else "padded", "patch_size": 1,
                "vocab_size": int(vocab.vocab_size), "eos_id": int(vocab.eos_id),
                "dtypes": {"targets": np.dtype(np.int32).str, "segment_ids": np.dtype(np.int32).str,
                           "positions": np.dtype(np.int32).str},
                "row_report": report.to_dict(), "too_long": counts["too_long"], "truncated": counts["truncated"],
                "longest_example": longest, "prompt_tokens": prompt_tokens, "answer_tokens": int(weight_sum),
                "packing_efficiency": non_pad / max(num_rows * length, 1),
                "loss_on_targets_only": loss_on_targets_only, "build_seconds": round(time.time() - t0, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        print(f"[data] {task}/{split}: {meta['num_documents']} examples -> {num_rows} rows of {length} "
              f"(packing efficiency {meta['packing_efficiency']:.3f}, {int(weight_sum)} loss tokens) "
              f"in {meta['build_seconds']:.1f}s", file=sys.stderr, flush=True)
        if rows_dir.exists():
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, rows_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(converted, out: Path, length: int, vocab) -> tuple[int, int, float]:
    files = {name: open(out / f"{name}.bin", "wb") for name in (*STORED, LOSS_WEIGHTS)}
    rows = non_pad = 0
    weight_sum = 0.0
    try:
        for batch in converted.batch(BATCH_ROWS).as_numpy_iterator():
            targets = batch["decoder_target_tokens"].astype(np.int32)
            if targets.shape[1] != length:
                raise AssertionError(f"converter produced rows of {targets.shape[1]} tokens, not {length}")
            if "decoder_segment_ids" in batch:
                seg, pos = batch["decoder_segment_ids"], batch["decoder_positions"]
            else:  # unpacked: one example per row, its non-padding prefix
                seg = (targets != 0).astype(np.int32)
                pos = np.where(seg > 0, np.arange(length), 0)
            weights = batch["decoder_loss_weights"].astype(np.uint8)
            files["targets"].write(targets.tobytes())
            files["segment_ids"].write(np.ascontiguousarray(seg, np.int32).tobytes())
            files["positions"].write(np.ascontiguousarray(pos, np.int32).tobytes())
            files[LOSS_WEIGHTS].write(weights.tobytes())
            rows += len(targets)
            non_pad += int(np.count_nonzero(seg))
            weight_sum += float(weights.sum())
    finally:
        for f in files.values():
            f.close()
    return rows, non_pad, weight_sum
