"""`python -m patch_training.train --gin_file=... --gin.MODEL_DIR="'runs/x'"` (T5X style).

Multi-host: every process runs the same command; the coordinator address, process count and id
come from `--coordinator_address/--num_processes/--process_id` or the standard environment
(`JAX_COORDINATOR_ADDRESS`, ...), and are auto-detected on TPU pod slices.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from patch_training.errors import UserError
from patch_training.gin_utils import add_gin_flags, call_configured, split_gin_bindings
from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

PROG = "python -m patch_training.train"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    bindings, rest = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    add_runtime_flags(parser)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given (e.g. --gin_file=configs/experiments/tiny_cpu.gin)")
    return args, bindings


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    setup_runtime(args)
    # Imported after the runtime is set up (fake CPU devices must be configured before JAX starts).
    from patch_training.main.gin_setup import parse_run_gin
    from patch_training.trainer import run_training
    parse_run_gin(args.gin_file, bindings, args.gin_search_path)
    call_configured(run_training)
    return 0
