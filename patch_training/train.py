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
from typing import Any, Sequence

import gin

from patch_training.errors import UserError, run_cli
from patch_training.gin_utils import add_gin_flags, call_configured, parse_gin, split_gin_bindings


def _vocab_spec(vocab: Any) -> dict | None:
    if vocab is None:
        return None
    if isinstance(vocab, dict):
        return vocab
    from patch_training.data.vocab import spec_for
    return spec_for(vocab)


@gin.configurable(module="train")
def run_training(*, model_dir: str = gin.REQUIRED, model_config: Any = gin.REQUIRED,
                 train_data: Any = gin.REQUIRED, eval_data: Any = None, vocab: Any = None,
                 trainer_config: Any = None, optimizer_config: Any = None, checkpoint_config: Any = None,
                 mesh_shape: Sequence[int] | None = None):
    """Train one run into `model_dir`; the gin entry point every run config binds."""
    import jax
    from patch_training.mesh import make_mesh
    from patch_training.optimizer import OptimizerConfig
    from patch_training.trainer import Trainer, TrainerConfig

    if not model_dir:
        raise UserError("MODEL_DIR is empty: pass --gin.MODEL_DIR=\"'runs/<name>'\"")
    vocab_spec = _vocab_spec(vocab)
    vocab_size = getattr(vocab, "vocab_size", None)
    if vocab_size is not None and model_config.vocab_size < vocab_size:
        raise UserError(f"ModelConfig.vocab_size={model_config.vocab_size} is smaller than the vocabulary's "
                        f"{vocab_size} tokens")
    trainer_config = trainer_config or TrainerConfig()
    mesh = make_mesh(mesh_shape)
    run_dir = Path(model_dir)
    if jax.process_index() == 0:
        from patch_training.gin_utils import write_operative_config
        write_operative_config(run_dir)
    trainer = Trainer(run_dir, model_config, trainer_config, train_data, eval_data,
                      optimizer_config or OptimizerConfig(), vocab_spec=vocab_spec, mesh=mesh,
                      checkpoint_config=checkpoint_config)
    result = trainer.run()
    if jax.process_index() == 0:
        write_operative_config(run_dir)  # now complete: everything gin bound was used
        summary = f"{result.status} at step {result.final_step}; run dir {run_dir}"
        if result.eval_metrics:
            summary += (f"; validation loss {result.eval_metrics['loss']:.4f}, "
                        f"perplexity {result.eval_metrics['perplexity']:.3f}")
        print(summary, flush=True)
    return result


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    bindings, rest = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog="python -m patch_training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0 (multi-host)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--num_cpu_devices", type=int, default=None,
                        help="fake CPU devices in this process (testing sharding without accelerators)")
    parser.add_argument("--cpu_collectives", choices=("gloo", "mpi", "none"), default=None,
                        help="CPU cross-process collectives (multi-process CPU runs need gloo)")
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given (e.g. --gin_file=configs/experiments/tiny_cpu.gin)")
    return args, bindings


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    # Register every configurable a run file may name before parsing.
    import patch_training.configurables  # noqa: F401
    parse_gin(args.gin_file, bindings, args.gin_search_path)
    call_configured(run_training)
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m patch_training.train")
