"""`python -m patch_training.aot --gin_file=<experiment> [--topology=v5p-128] [--flops=...] [--out F]`:
compile every stage of an experiment for a TPU slice on this CPU and print one JSON report line.

The engine is `patch_training.aot_compile` (see its docstring for what is measured). Exit status 1 when
a stage does not fit in the chip's HBM, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Sequence

from patch_training.errors import UserError
from patch_training.main.cli import parse_gin_command_line
from patch_training.tpu_topologies import TopologySpec, parse_topology

PROG = "python -m patch_training.aot"
EXAMPLE_TOPOLOGIES = ("v5p-128", "v5litepod-16", "v4-32", "v6e-16", "v5p:4x4x4")


def parse_engine_gin(gin_files: Sequence[str], bindings: Sequence[str], search_path: Sequence[str]) -> None:
    """Register every configurable a run file may name, then parse without finalizing.

    Not finalized: the run configs require what only a real run needs (MODEL_DIR, the tokenizer file);
    the configs the compiler builds still fail with one line on a missing required value.
    """
    from patch_training.main.gin_setup import parse_run_gin
    parse_run_gin(gin_files, bindings, search_path, finalize=False)


def configured_topology(flag: str | None) -> TopologySpec:
    """`--topology` when given, else the experiment's POD_SLICE macro."""
    from patch_training.aot_compile import POD_SLICE_MACRO
    if flag:
        return parse_topology(flag)
    import gin
    try:
        name = gin.query_parameter(f"{POD_SLICE_MACRO}/macro.value")
    except ValueError:
        raise UserError(f"no --topology given and the gin files set no {POD_SLICE_MACRO} macro "
                        "(e.g. --topology=v5p-128)") from None
    return parse_topology(str(name))


def _add_flags(parser: argparse.ArgumentParser) -> None:
    from patch_training.aot_compile import FLOPS_MODES
    parser.add_argument("--topology", default=None,
                        help=f"TPU slice ({'; '.join(EXAMPLE_TOPOLOGIES)}); default: the experiment's "
                             "POD_SLICE macro")
    parser.add_argument("--flops", choices=FLOPS_MODES, default="extrapolate",
                        help="how XLA's FLOPs are counted: unrolled compiles at depth 1 and 2 extrapolated "
                             "(default), the full unrolled depth (exact, slow), or not at all")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_gin_command_line(
        sys.argv[1:] if argv is None else list(argv), prog=PROG, doc=__doc__, add_flags=_add_flags,
        example_gin_file="configs/experiments/pod/370m_patch_v5p-128.gin")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The host side of an AOT compile is the CPU; never probe for local accelerators.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    jax.config.update("jax_platforms", os.environ["JAX_PLATFORMS"])
    from patch_training.aot_compile import compile_experiment

    parse_engine_gin(args.gin_file, bindings, args.gin_search_path)
    topology = configured_topology(args.topology)

    def say(text: str) -> None:
        print(f"[aot] {text}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    report = compile_experiment(topology, args.flops, say)
    report["total_s"] = round(time.perf_counter() - t0, 2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, sort_keys=False, default=float), flush=True)
    return 0 if all(row["fits"] for row in report["stages"]) else 1
