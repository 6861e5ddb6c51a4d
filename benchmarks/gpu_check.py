"""GPU readiness check: MFU of the 370M patch (K=4) and token train steps in bf16, in one command.

`python -m benchmarks.gpu_check` on a machine with NVIDIA GPUs (jax installed with its CUDA
plugin, e.g. `uv pip install "jax[cuda12]==0.12.0.1"` into .venv). It builds the trainer's real
step (same sharding rules, AdamW, donation) over every local GPU with the mesh of
`configs/mesh/gpu_8.gin` generalised to the GPUs present (FSDP over all of them), on random tokens:

- `token`: B rows of T = 2048 tokens, next-token loss;
- `patch`: B rows of K·T = 8192 tokens = 2048 patches, patch loss (same positions in the network,
  so the same FLOPs per step: REFERENCE §1),

each with attention through cuDNN's fused kernel (`ModelConfig.attention_impl = 'cudnn'`) and,
for comparison, XLA's own attention. Rows are unpacked (no segment ids), which is the causal-only
path cuDNN runs fastest; `--packed` adds segment ids (the real data's packing, a bias mask).

MFU = analytic FLOPs per step (`mfu.training_flops_per_step`: 3 × forward matmuls, causal
attention halved) / median step time / (bf16 peak per GPU × GPUs); peaks from `mfu.py`'s table
(H100/H200 989 TFLOP/s). Prints progress on stderr and one JSON object as its last stdout line.
On a machine without GPUs it refuses, unless `--allow_cpu` (a smoke run: use a tiny model).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

MODEL_GIN = "configs/models/370m.gin"


def load_model_config(gin_file: str, overrides: dict[str, Any]):
    import dataclasses
    import gin
    from patch_training.gin_utils import parse_gin
    from patch_training.model import ModelConfig
    parse_gin([gin_file], finalize=False)
    cfg = ModelConfig()
    gin.clear_config()
    return dataclasses.replace(cfg, **overrides)


def random_batch(vocab_size: int, rows: int, sequence_length: int, packed: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab_size, size=(rows, sequence_length + 1), dtype=np.int32)
    batch = {"decoder_input_tokens": tokens[:, :-1], "decoder_target_tokens": tokens[:, 1:],
             "decoder_loss_weights": np.ones((rows, sequence_length), np.float32)}
    if packed:  # two documents per row, as packing produces
        seg = np.ones((rows, sequence_length), np.int32)
        seg[:, sequence_length // 2:] = 2
        pos = np.concatenate([np.arange(sequence_length // 2), np.arange(sequence_length - sequence_length // 2)])
        batch["decoder_segment_ids"] = seg
        batch["decoder_positions"] = np.broadcast_to(pos.astype(np.int32), (rows, sequence_length)).copy()
    return batch


def build_step(model_config, patch_size: int, num_microbatches: int, mesh):
    """The trainer's jitted, sharded, donating step and a fresh sharded state (same glue as the trainer)."""
    import jax
    from patch_training import partitioning as sharding_lib
    from patch_training.model import Transformer
    from patch_training.optimizer import OptimizerConfig, make_optimizer
    from patch_training.train_state import create_train_state, state_shardings
    from patch_training.train_step import StepConfig, make_train_step

    tx, schedule = make_optimizer(OptimizerConfig(), 1000)
    shardings = state_shardings(model_config, tx, mesh)
    step_fn = make_train_step(Transformer(model_config), tx, schedule, StepConfig(patch_size, num_microbatches))
    jitted = jax.jit(step_fn, in_shardings=(shardings, sharding_lib.batch_sharding(mesh)),
                     out_shardings=(shardings, sharding_lib.replicated(mesh)), donate_argnums=0)
    state = create_train_state(model_config, tx, mesh, seed=0, shardings=shardings)
    return jitted, state


def measure(model_config, *, patch_size: int, rows: int, network_length: int, num_microbatches: int, steps: int,
            warmup: int, packed: bool, mesh, peak_tflops: float, label: str) -> dict:
    import jax
    from patch_training import mfu as mfu_lib
    from patch_training import partitioning as sharding_lib
    sequence_length = network_length * patch_size
    step, state = build_step(model_config, patch_size, num_microbatches, mesh)
    with sharding_lib.mesh_context(mesh):
        batch = sharding_lib.global_batch(random_batch(model_config.vocab_size, rows, sequence_length, packed), mesh)
    flops = mfu_lib.training_flops_per_step(model_config, network_length, rows)
    times, loss = [], float("nan")
    t_compile = time.perf_counter()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with sharding_lib.mesh_context(mesh):
            state, metrics = step(state, batch)
        loss = float(jax.device_get(metrics["loss"]))  # waits for the step
        dt = time.perf_counter() - t0
        if i == 0:
            compile_s = time.perf_counter() - t_compile
        if i >= warmup:
            times.append(dt)
        print(f"[gpu_check] {label} step {i + 1}/{warmup + steps}: {dt * 1e3:.1f} ms"
              f"{' (warm-up)' if i < warmup else ''} loss {loss:.3f}", file=sys.stderr, flush=True)
    median = statistics.median(times)
    devices = mesh.devices.size
    return {"run": label, "patch_size": patch_size, "rows": rows, "sequence_length": sequence_length,
            "network_length": network_length, "num_microbatches": num_microbatches,
            "attention_impl": model_config.attention_impl or "xla", "packed": packed,
            "step_s_median": median, "step_s_min": min(times), "first_step_s": compile_s,
            "tokens_per_s": rows * sequence_length / median, "flops_per_step": flops,
            "mfu_causal_halved": mfu_lib.mfu(flops, median, peak_tflops, devices), "final_loss": loss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL_GIN, help="model size gin file (default: the paper's 370M)")
    parser.add_argument("--network_length", type=int, default=2048, help="T: positions in the network")
    parser.add_argument("--patch_size", type=int, default=4, help="K for the patch step")
    parser.add_argument("--rows_per_gpu", type=int, default=8, help="rows per GPU per optimizer step")
    parser.add_argument("--num_microbatches", type=int, default=1)
    parser.add_argument("--attention", choices=("cudnn", "xla", "both"), default="both")
    parser.add_argument("--remat", default="none", help="ModelConfig.remat_policy (none, dots, full, ...)")
    parser.add_argument("--packed", action="store_true", help="rows hold two documents (segment-id mask)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--allow_cpu", action="store_true", help="smoke run without GPUs (CPU peak measured)")
    parser.add_argument("--out", default=None, help="also write the JSON object here")
    args = parser.parse_args(argv)

    import jax
    from patch_training import mfu as mfu_lib
    from patch_training.errors import UserError
    from patch_training.partitioning import make_mesh

    devices = jax.devices()
    on_gpu = devices[0].platform == "gpu"
    if not on_gpu and not args.allow_cpu:
        raise UserError(f"no GPU found (JAX sees {devices[0].platform}); install jax's CUDA plugin "
                        "(uv pip install 'jax[cuda12]==0.12.0.1') or pass --allow_cpu for a smoke run")
    mesh = make_mesh((1, -1, 1))   # configs/mesh/gpu_8.gin, generalised: FSDP over every local GPU
    if on_gpu:
        peak, peak_source = mfu_lib.table_peak_tflops(devices[0].device_kind), f"table:{devices[0].device_kind}"
        if peak is None:
            raise UserError(f"no bf16 peak known for {devices[0].device_kind!r}; add it to mfu.PEAK_TFLOPS_BF16")
    else:
        peak, peak_source = mfu_lib.device_peak_tflops("bfloat16")
    impls = ("cudnn", "xla") if args.attention == "both" else (args.attention,)
    if not on_gpu:
        impls = tuple(i for i in impls if i != "cudnn") or ("xla",)   # cuDNN needs a GPU
    rows = args.rows_per_gpu * len(devices)
    results = []
    for impl in impls:
        cfg = load_model_config(args.model, {"dtype": "bfloat16", "param_dtype": "float32",
                                             "attention_impl": None if impl == "xla" else impl,
                                             "remat_policy": args.remat})
        for kind, k in (("token", 1), (f"patch_k{args.patch_size}", args.patch_size)):
            label = f"{kind}/{impl}"
            print(f"[gpu_check] {label}: {rows} rows x {args.network_length * k} tokens on {len(devices)} "
                  f"{devices[0].device_kind}", file=sys.stderr, flush=True)
            results.append(measure(cfg, patch_size=k, rows=rows, network_length=args.network_length,
                                   num_microbatches=args.num_microbatches, steps=args.steps, warmup=args.warmup,
                                   packed=args.packed, mesh=mesh, peak_tflops=peak, label=label))
    report = {"benchmark": "gpu_check", "model": args.model, "devices": len(devices),
              "device_kind": devices[0].device_kind, "peak_tflops_per_device": peak, "peak_source": peak_source,
              "mesh": dict(mesh.shape), "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    from patch_training.errors import run_cli
    run_cli(main, prog="python -m benchmarks.gpu_check")
