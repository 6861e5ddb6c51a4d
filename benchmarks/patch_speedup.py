"""Patch-level vs token-level training throughput, side by side in one process.

`python -m benchmarks.patch_speedup [--model small] [--k 4] [--batch 8] [--network_length 128] [--steps 8]`

Same model, same number of positions inside the network per step (B rows × T positions): the
token-level step reads B rows of T tokens, the patch-level step B rows of K·T tokens (T patches).
Each timed step is the full train step as the trainer runs it: `host_batch` from the real row cache
(default code corpus, the model's vocabulary), transfer, the jitted AdamW step, and waiting for it.
The two kinds of steps alternate (K=1, K, K=1, K, ...) so that load on the shared machine hits both
alike; the median step time of each is used. Raw tokens consumed per second: tokens per row × rows
per step ÷ step time. The ideal speed-up is K (same network work, K× tokens); what falls short is
the patch-only extra work (K× embedding gathers and their gradient scatter, the mean, K targets per
patch in the loss) and K× the data fetch. Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def load_model_config(name: str):
    import gin
    from patch_training.gin_utils import parse_gin
    from patch_training.model import ModelConfig
    parse_gin([f"configs/models/{name}.gin"], finalize=False)
    cfg = ModelConfig()
    gin.clear_config()
    return cfg


def build_step(model_config, patch_size: int, mesh):
    from patch_training.optimizer import OptimizerConfig
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    compiled = compile_train_step(model_config, OptimizerConfig(), 1000, StepConfig(patch_size, 1), mesh)
    state = create_train_state(model_config, compiled.tx, mesh, 0, compiled.shardings)
    step = compiled.train_step
    return state, step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="configs/models/<name>.gin")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--network_length", type=int, default=128, help="T: positions inside the network")
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max_tokens", type=int, default=2_000_000, help="corpus tokens to build rows from")
    args = parser.parse_args(argv)

    import jax
    from patch_training.data.factory import make_dataset
    from patch_training.data.vocab import get_vocabulary
    from patch_training.partitioning import make_mesh
    from patch_training.partitioning import global_batch, mesh_context

    cfg = load_model_config(args.model)
    vocab = get_vocabulary(kind="byte") if cfg.vocab_size < 8192 else get_vocabulary(kind="sentencepiece",
                                                                                      vocab_size=cfg.vocab_size)
    mesh = make_mesh((1, 1, 1))
    kinds = {1: args.network_length, args.k: args.k * args.network_length}
    data = {k: make_dataset(task="code_corpus", split="train", sequence_length=length, patch_size=k,
                            concat=True, vocab=vocab, max_tokens=args.max_tokens) for k, length in kinds.items()}
    steps = {k: build_step(cfg, k, mesh) for k in kinds}
    times: dict[int, list[float]] = {k: [] for k in kinds}
    with mesh_context(mesh):
        for i in range(args.warmup + args.steps):
            for k in kinds:
                state, fn = steps[k]
                t0 = time.perf_counter()
                batch = global_batch(data[k].host_batch(i, args.batch), mesh)
                state, metrics = fn(state, batch)
                jax.block_until_ready(metrics)
                dt = time.perf_counter() - t0
                steps[k] = (state, fn)
                if i >= args.warmup:
                    times[k].append(dt)
                print(f"  step {i + 1}/{args.warmup + args.steps} K={k}: {dt:.3f}s loss "
                      f"{float(metrics['loss']):.3f}{' (warm-up)' if i < args.warmup else ''}",
                      file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: args.batch * kinds[k] / med[k] for k in kinds}
    result = {
        "benchmark": "patch_speedup", "model": args.model, "k": args.k, "batch": args.batch,
        "network_positions_per_step": args.batch * args.network_length,
        "token_level_tokens_per_s": tps[1], "patch_level_tokens_per_s": tps[args.k],
        "speedup": tps[args.k] / tps[1], "ideal_speedup": float(args.k),
        "token_level_step_s": med[1], "patch_level_step_s": med[args.k],
        "timed_steps_each": args.steps, "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
