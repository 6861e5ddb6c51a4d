"""Training throughput on CPU: our jitted AdamW step vs transformers' PyTorch LlamaForCausalLM.

`python -m benchmarks.train_throughput [--steps 5] [--batch 8] [--seq_len 512]`

Both sides train the `small` shape (configs/models/small.gin) on the same random token batch with
the same optimizer step (AdamW β 0.9/0.95, ε 1e-8, weight decay 0.1, global-norm clip 1.0), in
fp32 on the same cores, timed after warm-up. MFU uses the MaxText convention (training FLOPs = 3 ×
forward matmul FLOPs, causal attention halved) over a matmul peak measured in this same run in the
compute dtype. Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def load_model_config(gin_file: str = "configs/models/small.gin"):
    import gin
    from patch_training.gin_utils import parse_gin
    from patch_training.model import ModelConfig
    parse_gin([gin_file], finalize=False)
    cfg = ModelConfig()
    gin.clear_config()
    return cfg


def random_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab_size, size=(batch, seq_len + 1), dtype=np.int32)
    return {"decoder_input_tokens": tokens[:, :-1], "decoder_target_tokens": tokens[:, 1:],
            "decoder_segment_ids": np.ones((batch, seq_len), np.int32),
            "decoder_positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
            "decoder_loss_weights": np.ones((batch, seq_len), np.float32)}


def _timed(fn, steps: int, warmup: int, label: str) -> list[float]:
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        print(f"  {label} step {i + 1}/{warmup + steps}: {dt:.3f}s{' (warm-up)' if i < warmup else ''}",
              file=sys.stderr, flush=True)
    return times


def jax_step_times(cfg, batch_np: dict, steps: int, warmup: int, patch_size: int = 1) -> list[float]:
    import jax
    from patch_training.partitioning import make_mesh
    from patch_training.optimizer import OptimizerConfig
    from patch_training.partitioning import global_batch, mesh_context
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    compiled = compile_train_step(cfg, OptimizerConfig(warmup_steps=0), 1000, StepConfig(patch_size=patch_size), mesh)
    holder = {"state": create_train_state(cfg, compiled.tx, mesh, 0, compiled.shardings)}
    step = compiled.train_step
    batch = global_batch(batch_np, mesh)

    def one():
        with mesh_context(mesh):
            holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    return _timed(one, steps, warmup, "jax")


def torch_step_times(cfg, batch_np: dict, steps: int, warmup: int, threads: int) -> list[float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                     intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                     num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                     head_dim=cfg.resolved_head_dim, max_position_embeddings=max(cfg.max_seq_len, 512),
                     rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
                     tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM(hf).float().train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    inputs = torch.from_numpy(batch_np["decoder_input_tokens"].astype(np.int64))
    targets = torch.from_numpy(batch_np["decoder_target_tokens"].astype(np.int64))

    def one():
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return _timed(one, steps, warmup, "torch")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_gin", default="configs/models/small.gin")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip_reference", action="store_true", help="JAX side only")
    args = parser.parse_args(argv)

    from patch_training import mfu as mfu_lib
    cfg = load_model_config(args.model_gin)
    batch = random_batch(cfg.vocab_size, args.batch, args.seq_len)
    tokens = args.batch * args.seq_len
    flops = mfu_lib.training_flops_per_step(cfg, args.seq_len, args.batch)

    print(f"peak: measuring a {cfg.dtype} matmul ...", file=sys.stderr, flush=True)
    peak = mfu_lib.measure_matmul_peak_tflops(cfg.dtype, n=1536, repeats=6)
    jax_times = jax_step_times(cfg, batch, args.steps, args.warmup)
    ref_times = None if args.skip_reference else torch_step_times(cfg, batch, args.steps, args.warmup, args.threads)
    peak = max(peak, mfu_lib.measure_matmul_peak_tflops(cfg.dtype, n=1536, repeats=6))  # best of before/after

    step_s = statistics.median(jax_times)
    result = {
        "benchmark": "train_throughput", "model": os.path.basename(args.model_gin).removesuffix(".gin"),
        "params": None, "batch": args.batch, "seq_len": args.seq_len, "dtype": cfg.dtype,
        "steps_timed": args.steps, "cpu_threads": args.threads,
        "step_time_s": step_s,
        "tokens_per_s": tokens / step_s,
        "model_tflops_per_s": flops / step_s / 1e12,
        "peak_tflops_per_s": peak,
        "mfu": flops / step_s / 1e12 / peak,
        "mfu_convention": mfu_lib.MFU_METRIC,
        "training_flops_per_step": flops,
    }
    from patch_training.model import count_params, init_params
    import jax
    result["params"] = count_params(jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0))))
    if ref_times:
        ref_s = statistics.median(ref_times)
        result.update({"reference": "transformers LlamaForCausalLM (PyTorch, fp32)",
                       "reference_step_time_s": ref_s, "reference_tokens_per_s": tokens / ref_s,
                       "ratio": (tokens / step_s) / (tokens / ref_s),
                       "reference_mfu": flops / ref_s / 1e12 / peak})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
