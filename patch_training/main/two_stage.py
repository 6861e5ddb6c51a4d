"""`python -m patch_training.two_stage --gin_file=configs/experiments/patch/small_cpu_patch.gin
--gin.MODEL_DIR="'runs/x'" [--stage=1|2]`: both stages of patch-level training in one command.

See `patch_training.two_stage_training` for the method; runtime flags as in `python -m patch_training.train`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from patch_training.errors import UserError
from patch_training.gin_utils import add_gin_flags, call_configured, split_gin_bindings
from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

PROG = "python -m patch_training.two_stage"


def parse_experiment_gin(gin_files: Sequence[str], bindings: Sequence[str] = (),
                         search_path: Sequence[str] = ()) -> None:
    """Register every configurable, then `parse_gin` (one-line errors on misconfiguration)."""
    from patch_training.main.gin_setup import parse_run_gin
    parse_run_gin(gin_files, bindings, search_path)


def main(argv: Sequence[str] | None = None) -> int:
    bindings, rest = split_gin_bindings(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    parser.add_argument("--stage", type=int, choices=(1, 2), default=None,
                        help="run only this stage (default: both, resuming what exists)")
    add_runtime_flags(parser)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given (e.g. --gin_file=configs/experiments/patch/small_cpu_patch.gin)")
    setup_logging()
    setup_runtime(args)
    parse_experiment_gin(args.gin_file, bindings, args.gin_search_path)
    from patch_training.two_stage_training import run_experiment
    call_configured(run_experiment, stage=args.stage)
    return 0
