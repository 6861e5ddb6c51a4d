"""Greedy decode throughput: our decoder vs transformers' PyTorch LLaMA (same weights), interleaved.

    python -m benchmarks.decode_throughput [--model small] [--batch 8] [--new_tokens 128] [--prompt_len 16]
        [--repeats 5] [--threads N] [--strict]

The `small` shape (configs/models/small.gin; `--model`) with random weights, on CPU. Every side decodes the same
random prompts for exactly `new_tokens` tokens (no early stop). Each repeat runs every side once, in
turn (ours bf16, ours fp32, PyTorch fp32, PyTorch bf16), so a disturbance hits all sides alike;
compiles and warm-ups are excluded; best and median over the repeats are reported.

- ours bf16: `Decoder(compute_dtype="bfloat16")`: bf16 matmuls, fp32 params (cast once) and fp32 cache.
- ours fp32: `Decoder()` on the fp32 checkpoint (equal to the full forward pass).
- PyTorch bf16: the reference model converted with `.to(torch.bfloat16)` (weights and activations
  bf16; not autocast, which re-casts the weights every step).

The CPU check: other processes' CPU use is the machine's busy time (/proc/stat) minus this
process's own CPU time over the run. Above 0.2 cores on average the result carries `"cpu_busy": true`
and a warning line; `--strict` refuses to report it (exit 3). PyTorch's thread pool collapses when
cores are shared, so a busy run is not a measurement. The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

BUSY_CORES = 0.2


def _model_config(name: str = "small"):
    """ModelConfig of configs/models/<name>.gin."""
    import gin
    from patch_training.gin_utils import CONFIG_ROOT
    from patch_training.model import ModelConfig

    gin.clear_config()
    gin.parse_config_file(str(CONFIG_ROOT / "models" / f"{name}.gin"))
    config = ModelConfig()
    gin.clear_config()
    return config


def _machine_busy_s() -> float:
    """Seconds of CPU time all processes have used since boot (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class CpuWatch:
    """Other processes' average CPU use (in cores) between start() and stop()."""

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), _machine_busy_s(), _own_cpu_s()

    def stop(self) -> float:
        wall = max(time.monotonic() - self.t0, 1e-9)
        others = (_machine_busy_s() - self.busy0) - (_own_cpu_s() - self.own0)
        return max(others, 0.0) / wall


def _idle_probe(seconds: float = 1.0) -> float:
    watch = CpuWatch()
    watch.start()
    time.sleep(seconds)
    return watch.stop()


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="configs/models/<name>.gin (random weights)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--prompt_len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (XLA uses all cores)")
    parser.add_argument("--strict", action="store_true", help="refuse to report when the CPUs are busy")
    parser.add_argument("--idle_probe_s", type=float, default=1.0,
                        help="seconds of watching the CPUs before the run (0: no probe, for smoke runs)")
    args = parser.parse_args(argv)

    import jax
    import torch
    import transformers

    from evals.decoding import Decoder
    from patch_training.hf_convert import config_to_hf, params_to_hf
    from patch_training.model import count_params, init_params

    jax.config.update("jax_platforms", "cpu")
    torch.set_num_threads(args.threads)
    before = _idle_probe(args.idle_probe_s) if args.idle_probe_s > 0 else 0.0
    if before > BUSY_CORES:
        print(f"WARNING: other processes use {before:.2f} cores before the run", flush=True)
    config = _model_config(args.model)
    params = init_params(config, jax.random.key(0))
    print(f"{args.model} model: {count_params(params) / 1e6:.1f}M params; batch {args.batch}, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, greedy, {args.repeats} repeats",
          flush=True)
    prompts = np.random.default_rng(0).integers(3, config.vocab_size, (args.batch, args.prompt_len))
    kw = dict(max_new_tokens=args.new_tokens, stop_tokens=[])

    sides: dict[str, object] = {}
    ours_bf16 = Decoder(config, params, batch_size=args.batch, compute_dtype="bfloat16")
    ours_fp32 = Decoder(config, params, batch_size=args.batch, compute_dtype="float32")
    sides["ours_bf16"] = lambda: np.array([r[0].token_ids for r in ours_bf16.generate(prompts.tolist(), **kw)])
    sides["ours_fp32"] = lambda: np.array([r[0].token_ids for r in ours_fp32.generate(prompts.tolist(), **kw)])

    hf_config = transformers.LlamaConfig(**{k: v for k, v in config_to_hf(config).items()
                                            if k not in ("architectures", "model_type")})
    ref32 = transformers.LlamaForCausalLM(hf_config).eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_hf(params, config).items()}
    ref32.load_state_dict(state, strict=True)
    ref16 = transformers.LlamaForCausalLM(hf_config).eval()
    ref16.load_state_dict(state, strict=True)
    ref16 = ref16.to(torch.bfloat16)
    input_ids = torch.as_tensor(prompts)

    def torch_side(model):
        def run():
            with torch.inference_mode():
                out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                     max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False, eos_token_id=None, pad_token_id=0)
            return out[:, args.prompt_len:].numpy()
        return run
    sides["torch_fp32"] = torch_side(ref32)
    sides["torch_bf16"] = torch_side(ref16)

    tokens: dict[str, np.ndarray] = {}
    for name, fn in sides.items():  # compile / warm up
        seconds, tokens[name] = _timed(fn)
        print(f"{name}: warm-up {seconds:.1f}s", flush=True)

    times: dict[str, list[float]] = {name: [] for name in sides}
    watch = CpuWatch()
    watch.start()
    for rep in range(args.repeats):
        for name, fn in sides.items():
            seconds, _ = _timed(fn)
            times[name].append(seconds)
        print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(
            f"{n} {args.batch * args.new_tokens / times[n][-1]:.0f} tok/s" for n in sides), flush=True)
    others = watch.stop()
    cpu_busy = max(others, before) > BUSY_CORES
    if cpu_busy:
        print(f"WARNING: other processes used {others:.2f} cores on average during the run "
              f"({before:.2f} before); these figures are not a measurement", flush=True)
        if args.strict:
            print("refusing to report (--strict)", file=sys.stderr)
            return 3

    generated = args.batch * args.new_tokens
    best = {n: round(generated / min(t), 1) for n, t in times.items()}
    median = {n: round(generated / statistics.median(t), 1) for n, t in times.items()}
    agree = lambda a, b: round(float(np.mean(tokens[a] == tokens[b])), 4)
    result = {
        "benchmark": "decode_throughput",
        "model": args.model,
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "tokens_per_s_best": best,
        "tokens_per_s_median": median,
        # The headline: our fast setting (bf16 compute) against each PyTorch precision.
        "ours_tokens_per_s": best["ours_bf16"],
        "reference_tokens_per_s": best["torch_fp32"],
        "ratio": round(best["ours_bf16"] / best["torch_fp32"], 3),
        "ratio_vs_torch_fp32": {"best": round(best["ours_bf16"] / best["torch_fp32"], 3),
                                "median": round(median["ours_bf16"] / median["torch_fp32"], 3)},
        "ratio_vs_torch_bf16": {"best": round(best["ours_bf16"] / best["torch_bf16"], 3),
                                "median": round(median["ours_bf16"] / median["torch_bf16"], 3)},
        "ratio_fp32_vs_torch_fp32": {"best": round(best["ours_fp32"] / best["torch_fp32"], 3),
                                     "median": round(median["ours_fp32"] / median["torch_fp32"], 3)},
        # Same weights, greedy: fp32 sides should agree (rounding can split late near-ties); bf16
        # sides diverge after the first near-tie, so agreement is a fraction of positions.
        "greedy_agreement": {
            "ours_fp32_vs_torch_fp32": agree("ours_fp32", "torch_fp32"),
            "ours_bf16_vs_torch_fp32": agree("ours_bf16", "torch_fp32"),
            "ours_bf16_vs_torch_bf16": agree("ours_bf16", "torch_bf16"),
            "torch_bf16_vs_torch_fp32": agree("torch_bf16", "torch_fp32"),
        },
        "torch_bf16_mode": "model.to(torch.bfloat16)",
        "cpu_busy": cpu_busy,
        "other_processes_cores": round(max(others, before), 3),
        "reference": f"transformers {transformers.__version__} LlamaForCausalLM, torch "
                     f"{torch.__version__}, {args.threads} threads",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
