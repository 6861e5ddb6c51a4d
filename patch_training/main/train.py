"""`python -m patch_training.train --gin_file=... --gin.MODEL_DIR="'runs/x'"` (T5X style).

Multi-host: every process runs the same command; the coordinator address, process count and id
come from `--coordinator_address/--num_processes/--process_id` or the standard environment
(`JAX_COORDINATOR_ADDRESS`, ...), and are auto-detected on TPU pod slices.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from patch_training.gin_utils import call_configured
from patch_training.main.cli import parse_gin_command_line
from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

PROG = "python -m patch_training.train"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    return parse_gin_command_line(argv, prog=PROG, doc=__doc__, add_flags=add_runtime_flags,
                                  example_gin_file="configs/experiments/tiny_cpu.gin")


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    setup_runtime(args)
    # Imported after the runtime is set up (fake CPU devices must be configured before JAX starts).
    from patch_training.main.gin_setup import parse_run_gin
    from patch_training.training import run_training
    parse_run_gin(args.gin_file, bindings, args.gin_search_path)
    call_configured(run_training)
    return 0
