"""`python -m patch_training.data.preprocess --gin_file=EXPERIMENT.gin --out=ROOT [row-set flags] [Beam options]`:
a corpus, once, into an ArrayRecord row store that training reads by random access (`make_dataset.row_stores`).

The gin files are the training run's own (they register the corpus and bind the tokenizer), so the
store's key is the one the run computes. Row-set flags name one row set: `--split`, `--sequence_length`
(tokens per row), `--patch_size` (K, concat rows of K·T), `--concat` (token rows cut from the stream),
`--no_pack` (padded rows). `--task` defaults to the gin macro TASK. Every other flag goes to Beam:
by default the DirectRunner in `--direct_num_workers` processes (multi_processing); `--runner=DataflowRunner
--project=... --region=... --temp_location=gs://... --sdk_container_image=...` runs it on Dataflow
(Flink and Spark likewise). A rerun skips the units and shards that are complete.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from patch_training.main.cli import split_gin_bindings
from patch_training.errors import UserError

PROG = "python -m patch_training.data.preprocess"


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    bindings, rest = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", default=[], help="the training run's gin files")
    parser.add_argument("--gin_search_path", action="append", default=[])
    parser.add_argument("--out", required=True, help="store root: a local dir, a mounted bucket or gs://...")
    parser.add_argument("--task", default=None, help="corpus name (default: the gin macro TASK)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--sequence_length", type=int, required=True, help="tokens per row (K·T for patch rows)")
    parser.add_argument("--patch_size", type=int, default=1)
    parser.add_argument("--concat", action="store_true", help="token rows cut from the joined stream")
    parser.add_argument("--no_pack", action="store_true", help="padded rows: one piece per row")
    parser.add_argument("--rows_per_shard", type=int, default=8192)
    parser.add_argument("--tfds_units", type=int, default=16, help="sub-splits a TFDS split is tokenized in")
    parser.add_argument("--direct_num_workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner worker processes (default: the cores)")
    args, beam_args = parser.parse_known_args(list(rest))
    if not args.gin_file:
        raise UserError("no --gin_file given (the training run's gin files: they register the corpus and tokenizer)")
    return args, bindings, beam_args


def resolve_task(task: str | None) -> str:
    """--task, or the TASK macro (evaluating it registers the corpus its gin file describes)."""
    import gin

    from patch_training.data import tasks
    if task and tasks.get_source(task) is not None:
        return task
    try:
        value = gin.query_parameter("%TASK")
    except ValueError:
        raise UserError("no --task and no TASK macro in the gin files") from None
    if isinstance(value, gin.config.ConfigurableReference):
        value = value.scoped_configurable_fn()  # registers the corpus the gin file describes
    if task and tasks.get_source(task) is None:
        raise UserError(f"unknown corpus {task!r}; registered corpora: {', '.join(tasks.registered_sources())}")
    return task or str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings, beam_args = parse(sys.argv[1:] if argv is None else list(argv))
    import logging
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its INFO lines drown the progress lines
    from patch_training.main.gin_setup import parse_run_gin
    parse_run_gin(args.gin_file, bindings, args.gin_search_path, finalize=False)
    # Beam's worker processes import this repository's modules by name.
    from patch_training.data.paths import REPO_ROOT
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    from patch_training.data import store_build, vocab
    task = resolve_task(args.task)
    out = store_build.build_store(
        root=args.out, task=task, split=args.split, sequence_length=args.sequence_length,
        patch_size=args.patch_size, pack=not args.no_pack, concat=args.concat, vocab=vocab.get_vocabulary(),
        rows_per_shard=args.rows_per_shard, tfds_units=args.tfds_units, pipeline_args=beam_args,
        workers=args.direct_num_workers)
    print(out, flush=True)
    return 0
