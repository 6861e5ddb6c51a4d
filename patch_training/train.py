"""`python -m patch_training.train --gin_file=... --gin.MODEL_DIR="'runs/x'"` (T5X style).

Multi-host: every process runs the same command; the coordinator address, process count and id
come from `--coordinator_address/--num_processes/--process_id` or the standard environment
(`JAX_COORDINATOR_ADDRESS`, ...), and are auto-detected on TPU pod slices.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from patch_training.errors import UserError, run_cli
from patch_training.gin_utils import add_gin_flags, call_configured, parse_gin, split_gin_bindings


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every training entry point shares: multi-host coordinates and fake CPU devices."""
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0 (multi-host)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--num_cpu_devices", type=int, default=None,
                        help="fake CPU devices in this process (testing sharding without accelerators)")
    parser.add_argument("--cpu_collectives", choices=("gloo", "mpi", "none"), default=None,
                        help="CPU cross-process collectives (multi-process CPU runs need gloo)")


def setup_runtime(args: argparse.Namespace) -> None:
    """Fake CPU devices, CPU collectives and the distributed runtime, before any JAX computation."""
    import jax
    if args.num_cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.num_cpu_devices)
    from patch_training import multihost
    multi = (args.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "1") or 1)) > 1
    if args.cpu_collectives and args.cpu_collectives != "none":
        jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
    elif multi and args.num_cpu_devices:
        multihost.use_gloo_cpu_collectives()
    multihost.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    bindings, rest = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog="python -m patch_training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    add_runtime_flags(parser)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given (e.g. --gin_file=configs/experiments/tiny_cpu.gin)")
    return args, bindings


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("patch_training").setLevel(logging.INFO)
    setup_runtime(args)
    # Register every configurable a run file may name before parsing.
    import patch_training.configurables  # noqa: F401
    parse_gin(args.gin_file, bindings, args.gin_search_path)
    from patch_training.trainer import run_training
    call_configured(run_training)
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m patch_training.train")
