"""Corpora, vocabularies and step-indexed batches for the trainer.

Public API:
- `make_dataset(*, task, split, sequence_length, vocab, seed, cache_dir, pack, patch_size, ...)`
  -> `StepIndexedDataset` with `host_batch(step, global_batch_size, process_index, process_count)`
  and `eval_batches(global_batch_size, process_index, process_count)`.
- `measure_pipeline_tokens_per_s(dataset, global_batch_size, steps)`.
- `register_code_corpus`, `register_jsonl_corpus`, `register_tfds_corpus` (gin; return the name).
- vocabularies: see `patch_training.data.vocab`.
"""
from patch_training.data import row_store, store_build  # noqa: F401  (submodules, named in the API)
from patch_training.data.factory import make_dataset
from patch_training.data.step_dataset import FEATURES, StepIndexedDataset, measure_pipeline_tokens_per_s
from patch_training.data.tasks import register_code_corpus, register_jsonl_corpus, register_tfds_corpus
from patch_training.data.vocab import get_vocabulary, spec_for, vocab_from_spec

__all__ = ["FEATURES", "StepIndexedDataset", "get_vocabulary", "make_dataset",
           "measure_pipeline_tokens_per_s", "register_code_corpus", "register_jsonl_corpus",
           "register_tfds_corpus", "spec_for", "vocab_from_spec"]
