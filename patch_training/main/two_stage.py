"""`python -m patch_training.two_stage --gin_file=configs/experiments/patch/small_cpu_patch.gin
--gin.MODEL_DIR="'runs/x'" [--stage=1|2] [--plan_only]`: both stages of patch-level training in one command.

`--plan_only` prints the stage plan (steps, rows and tokens per step, share of the optimizer updates)
and exits without data or compilation; gin values the plan does not read (corpus, tokenizer,
MODEL_DIR) may stay unset. With MODEL_DIR, an existing run dir's recorded plan applies.

See `patch_training.two_stage_training` for the method; runtime flags as in `python -m patch_training.train`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from patch_training.gin_utils import call_configured
from patch_training.main.cli import parse_gin_command_line
from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

PROG = "python -m patch_training.two_stage"


def parse_experiment_gin(gin_files: Sequence[str], bindings: Sequence[str] = (),
                         search_path: Sequence[str] = ()) -> None:
    """Register every configurable, then `parse_gin` (one-line errors on misconfiguration)."""
    from patch_training.main.gin_setup import parse_run_gin
    parse_run_gin(gin_files, bindings, search_path)


def main(argv: Sequence[str] | None = None) -> int:
    def add_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stage", type=int, choices=(1, 2), default=None,
                            help="run only this stage (default: both, resuming what exists)")
        parser.add_argument("--plan_only", action="store_true",
                            help="print the stage plan and exit (no data, no compilation)")
        add_runtime_flags(parser)

    args, bindings = parse_gin_command_line(
        sys.argv[1:] if argv is None else list(argv), prog=PROG, doc=__doc__, add_flags=add_flags,
        example_gin_file="configs/experiments/patch/small_cpu_patch.gin")
    setup_logging()
    if args.plan_only:
        return print_plan(args.gin_file, bindings, args.gin_search_path)
    setup_runtime(args)
    parse_experiment_gin(args.gin_file, bindings, args.gin_search_path)
    from patch_training.two_stage_training import run_experiment
    call_configured(run_experiment, stage=args.stage)
    return 0


def print_plan(gin_files: Sequence[str], bindings: Sequence[str], search_path: Sequence[str]) -> int:
    """`--plan_only`: parse without finalizing, so REQUIRED values only a real run reads may stay unset."""
    import gin

    from patch_training.main.gin_setup import parse_run_gin
    from patch_training.two_stage_training import TwoStageConfig, plan_lines
    parse_run_gin(gin_files, bindings, search_path, finalize=False)
    cfg = call_configured(TwoStageConfig)
    try:
        model_dir = gin.query_parameter("%MODEL_DIR")
    except ValueError:  # no such macro in these files
        model_dir = None
    print("\n".join(plan_lines(cfg, model_dir if isinstance(model_dir, str) else None)), flush=True)
    return 0
