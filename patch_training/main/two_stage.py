"""`python -m patch_training.two_stage --gin_file=configs/experiments/patch/small_cpu_patch.gin
--gin.MODEL_DIR="'runs/x'" [--stage=1|2]`: both stages of patch-level training in one command.

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
        add_runtime_flags(parser)

    args, bindings = parse_gin_command_line(
        sys.argv[1:] if argv is None else list(argv), prog=PROG, doc=__doc__, add_flags=add_flags,
        example_gin_file="configs/experiments/patch/small_cpu_patch.gin")
    setup_logging()
    setup_runtime(args)
    parse_experiment_gin(args.gin_file, bindings, args.gin_search_path)
    from patch_training.two_stage_training import run_experiment
    call_configured(run_experiment, stage=args.stage)
    return 0
