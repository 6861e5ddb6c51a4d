"""Flags and set-up every training entry point shares: multi-host coordinates, fake CPU devices, logging."""
from __future__ import annotations

import argparse
import logging
import os


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every training entry point shares: multi-host coordinates and fake CPU devices."""
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0 (multi-host)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--num_cpu_devices", type=int, default=None,
                        help="fake CPU devices in this process (testing sharding without accelerators)")
    parser.add_argument("--cpu_collectives", choices=("gloo", "mpi", "none"), default=None,
                        help="CPU cross-process collectives (multi-process CPU runs need gloo)")


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("patch_training").setLevel(logging.INFO)


def setup_runtime(args: argparse.Namespace) -> None:
    """Fake CPU devices, CPU collectives and the distributed runtime, before any JAX computation."""
    import jax

    from patch_training import multihost
    if args.num_cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.num_cpu_devices)
    multi = (args.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "1") or 1)) > 1
    if args.cpu_collectives and args.cpu_collectives != "none":
        jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
    elif multi and args.num_cpu_devices:
        multihost.use_gloo_cpu_collectives()
    multihost.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
