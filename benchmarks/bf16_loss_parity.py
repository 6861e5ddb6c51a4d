"""bf16 training vs fp32 training: how far apart are the loss curves?

`python -m benchmarks.bf16_loss_parity [--steps 300] [--batch 8] [--sequence_length 128]`

Trains the `tiny` model twice from the same initial parameters on the same batches (packed
arithmetic "documents", a learnable stream with segment ids), once in fp32 (the model gin's own
numerics) and once with `--numerics_gin` (default configs/models/cpu_bf16_train.gin: bf16 compute,
fp32 params, einsum attention, bf16 logits dot, oneDNN). Reports the largest per-step gap, the
largest gap of the 10-step running means (what a logged curve shows), and the final losses; the
tolerance we hold the bf16 path to is `--tolerance` on the smoothed gap. Prints one JSON object as
its last line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from benchmarks.train_throughput import DEFAULT_NUMERICS, load_model_config


def arithmetic_batch(step: int, batch: int, sequence_length: int, vocab_size: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Rows packed with short arithmetic sequences (start + stride·i mod V), one segment per sequence."""
    rng = np.random.default_rng([seed, step])
    targets = np.zeros((batch, sequence_length), np.int32)
    segments = np.zeros((batch, sequence_length), np.int32)
    positions = np.zeros((batch, sequence_length), np.int32)
    for r in range(batch):
        pos, seg = 0, 1
        while pos < sequence_length:
            length = int(rng.integers(8, sequence_length // 2 + 1))
            start, stride = int(rng.integers(2, vocab_size)), int(rng.integers(1, 6))
            doc = (start + stride * np.arange(length)) % (vocab_size - 2) + 2
            take = min(length, sequence_length - pos)
            targets[r, pos:pos + take] = doc[:take]
            segments[r, pos:pos + take] = seg
            positions[r, pos:pos + take] = np.arange(take)
            pos, seg = pos + take, seg + 1
    inputs = np.zeros_like(targets)
    inputs[:, 1:] = targets[:, :-1] * (segments[:, 1:] == segments[:, :-1])
    return {"decoder_input_tokens": inputs, "decoder_target_tokens": targets, "decoder_segment_ids": segments,
            "decoder_positions": positions, "decoder_loss_weights": np.ones((batch, sequence_length), np.float32)}


def loss_curve(cfg, steps: int, batch: int, sequence_length: int, learning_rate: float = 1e-3,
               onednn: str = "auto") -> list[float]:
    """Per-step training losses of `cfg` from seed-0 parameters over the arithmetic stream."""
    import jax
    from patch_training.optimizer import OptimizerConfig
    from patch_training.partitioning import global_batch, make_mesh, mesh_context
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    compiled = compile_train_step(cfg, OptimizerConfig(learning_rate=learning_rate, warmup_steps=max(1, steps // 20)),
                                  steps, StepConfig(onednn_on_cpu=onednn), mesh)
    state = create_train_state(cfg, compiled.tx, mesh, 0, compiled.shardings)
    losses = []
    with mesh_context(mesh):
        for step in range(steps):
            state, metrics = compiled.train_step(
                state, global_batch(arithmetic_batch(step, batch, sequence_length, cfg.vocab_size), mesh))
            losses.append(metrics["loss"])
    return [float(x) for x in jax.device_get(losses)]


def running_mean(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    return (c[window:] - c[:-window]) / window


def compare(fp32: list[float], other: list[float], window: int = 10) -> dict:
    gap = np.abs(np.asarray(fp32) - np.asarray(other))
    smooth = np.abs(running_mean(fp32, window) - running_mean(other, window))
    return {"max_step_gap": float(gap.max()), "max_smoothed_gap": float(smooth.max()),
            "final_smoothed_gap": float(smooth[-1]), "smoothing_window": window,
            "first_loss": fp32[0], "final_loss_fp32": float(running_mean(fp32, window)[-1]),
            "final_loss_other": float(running_mean(other, window)[-1])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_gin", default="configs/models/tiny.gin")
    parser.add_argument("--numerics_gin", default=DEFAULT_NUMERICS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed smoothed gap, nats")
    args = parser.parse_args(argv)

    fp32_cfg = load_model_config(args.model_gin, None)
    bf16_cfg = load_model_config(args.model_gin, args.numerics_gin)
    fp32_cfg = dataclasses.replace(fp32_cfg, scan_layers=bf16_cfg.scan_layers)
    curves = {}
    for name, cfg in (("fp32", fp32_cfg), ("bf16", bf16_cfg)):
        t0 = time.perf_counter()
        curves[name] = loss_curve(cfg, args.steps, args.batch, args.sequence_length, args.learning_rate)
        print(f"  {name}: {args.steps} steps in {time.perf_counter() - t0:.1f}s, loss {curves[name][0]:.3f} -> "
              f"{curves[name][-1]:.3f}", file=sys.stderr, flush=True)
    result = {"benchmark": "bf16_loss_parity", "model": args.model_gin, "numerics_gin": args.numerics_gin,
              "steps": args.steps, "batch": args.batch, "sequence_length": args.sequence_length,
              **compare(curves["fp32"], curves["bf16"]), "tolerance_smoothed_gap": args.tolerance}
    result["within_tolerance"] = result["max_smoothed_gap"] <= args.tolerance
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
