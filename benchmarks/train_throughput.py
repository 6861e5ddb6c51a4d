"""Training throughput on CPU: our jitted AdamW step vs transformers' PyTorch LlamaForCausalLM.

`python -m benchmarks.train_throughput [--repeats 5] [--batch 8] [--sequence_length 512] [--strict]`

All sides train the `small` shape (configs/models/small.gin) on the same random token batch with the
same optimizer step (AdamW β 0.9/0.95, ε 1e-8, weight decay 0.1, global-norm clip 1.0) on the same
cores:

- ours: the trainer's compiled step (`compile_train_step`) with the CPU training numerics of
  `--numerics_gin` (default configs/models/cpu_bf16_train.gin: bf16 compute, fp32 params, oneDNN);
  `--with_ours_fp32` adds our fp32 step as a fourth side;
- PyTorch fp32, and PyTorch with bf16 autocast (fp32 master weights, loss in fp32).

Fairness: every repeat runs `--steps_per_repeat` timed steps of each side back to back (the side
order rotates between repeats), so a slow phase of the machine hits all sides alike; best and
median over the repeats are reported. Other processes on the CPUs are measured from /proc/stat
during the run (minus this process's own CPU time): above `--busy_threshold` of the cores the
result is flagged `"cpu_busy": true` with a warning line, and `--strict` refuses to start on a
busy machine and exits 3 after a run that was disturbed.
Both sides share one malloc, tcmalloc by default (`--malloc`, named in the JSON): under glibc's
malloc each side re-faults the memory the other just freed, and the timings measure the kernel.

MFU: MaxText convention (training FLOPs = 3 × forward matmul FLOPs, causal attention halved) over
the matmul peak of the kernel path each side actually uses, measured in this run (ours: an n×n
matmul compiled with the train step's own per-jit options, e.g. oneDNN bf16; PyTorch: torch.matmul
in fp32 or bf16). The peaks are named in the JSON. Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

DEFAULT_NUMERICS = "configs/models/cpu_bf16_train.gin"
# Both sides run in this one process, so both get the same malloc (see patch_training/allocator.py):
#   tcmalloc       preload tcmalloc (default; scripts/setup.sh installs it). Freed buffers are reused,
#                  neither side faults in memory again that the other side just released.
#   system         glibc's malloc as the process started (the fallback when tcmalloc is missing). Each
#                  side re-faults the buffers the other just released: measured on 2 cores, ours 3.1 s
#                  instead of 1.4 s per step, PyTorch bf16 2.7 s instead of 1.7 s.
#   glibc_hugetlb  glibc with transparent huge pages for large blocks: fewer faults, but each huge
#                  page is compacted and zeroed in the kernel; worse still for ours (up to 6 s a step).
MALLOC_CHOICES = ("tcmalloc", "glibc_hugetlb", "system")
MALLOC_HUGETLB = "glibc.malloc.hugetlb=1"


def reexec_with_malloc(choice: str, argv: list[str]) -> None:
    """Restart this benchmark under the chosen allocator unless it already runs under it."""
    from patch_training import allocator
    module = __spec__.name if __spec__ else "benchmarks.train_throughput"
    if choice == "tcmalloc":
        allocator.reexec_under_tcmalloc(module, argv)  # returns only if there is nothing to change
        if not allocator.preloaded_allocator():
            print("warning: tcmalloc is not installed (scripts/setup.sh installs libtcmalloc-minimal4); "
                  "running on glibc's malloc, where page faults dominate the interleaved timings",
                  file=sys.stderr)
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if choice == "system" or "glibc.malloc.hugetlb" in tunables or allocator.preloaded_allocator():
        return
    allocator.reexec_module(module, argv,
                            dict(os.environ, GLIBC_TUNABLES=":".join(t for t in (tunables, MALLOC_HUGETLB) if t)))


def malloc_in_use() -> str:
    from patch_training import allocator
    preloaded = allocator.preloaded_allocator()
    if preloaded:
        return os.path.basename(preloaded)
    return "glibc" + (" (" + os.environ["GLIBC_TUNABLES"] + ")" if os.environ.get("GLIBC_TUNABLES") else "")


def load_model_config(gin_file: str = "configs/models/small.gin", numerics_gin: str | None = None):
    import gin
    from patch_training.gin_utils import parse_gin
    from patch_training.model import ModelConfig
    parse_gin([gin_file] + ([numerics_gin] if numerics_gin else []), finalize=False)
    cfg = ModelConfig()
    gin.clear_config()
    return cfg


def random_batch(vocab_size: int, batch: int, sequence_length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab_size, size=(batch, sequence_length + 1), dtype=np.int32)
    return {"decoder_input_tokens": tokens[:, :-1], "decoder_target_tokens": tokens[:, 1:],
            "decoder_segment_ids": np.ones((batch, sequence_length), np.int32),
            "decoder_positions": np.broadcast_to(np.arange(sequence_length, dtype=np.int32),
                                                 (batch, sequence_length)).copy(),
            "decoder_loss_weights": np.ones((batch, sequence_length), np.float32)}


# ----------------------------------------------------------------------------- CPU contention


def _proc_stat_busy_s() -> float:
    """Seconds of non-idle CPU time of the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuWatch:
    """Share of the cores that *other* processes used between `start()` and `stop()`."""

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _proc_stat_busy_s(), _own_cpu_s()
        self.load0 = os.getloadavg()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        others = (_proc_stat_busy_s() - self.busy0) - (_own_cpu_s() - self.own0)
        ncpu = os.cpu_count() or 1
        return {"others_cpu_share": max(0.0, others / (wall * ncpu)), "wall_s": wall,
                "loadavg_1m_before": self.load0[0], "loadavg_1m_after": os.getloadavg()[0]}


def idle_check(seconds: float = 1.0) -> float:
    watch = CpuWatch()
    watch.start()
    time.sleep(seconds)
    return watch.stop()["others_cpu_share"]


# ----------------------------------------------------------------------------- sides


@dataclasses.dataclass
class Side:
    name: str
    step: Callable[[], float]          # runs one training step to completion; returns the loss
    measure_peak: Callable[[], float]  # TFLOP/s of a matmul on this side's kernel path
    peak_path: str
    peak_tflops: float = 0.0
    times: list[float] = dataclasses.field(default_factory=list)
    last_loss: float | None = None


def jax_side(name: str, cfg, batch_np: dict, onednn: str = "auto", peak_n: int = 1536, patch_size: int = 1) -> Side:
    """Our compiled train step on `batch_np` (rows of K·T tokens when `patch_size` = K > 1). The matmul peak
    is measured by whoever needs it (`measure_peak`), not here: benchmarks that only time steps skip it."""
    import jax
    from patch_training import mfu as mfu_lib
    from patch_training.optimizer import OptimizerConfig
    from patch_training.partitioning import global_batch, make_mesh, mesh_context
    from patch_training.train_state import create_train_state
    from patch_training.train_step import StepConfig, compile_train_step

    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    compiled = compile_train_step(cfg, OptimizerConfig(warmup_steps=0), 1000,
                                  StepConfig(patch_size=patch_size, onednn_on_cpu=onednn), mesh)
    holder = {"state": create_train_state(cfg, compiled.tx, mesh, 0, compiled.shardings)}
    batch = global_batch(batch_np, mesh)

    def one() -> float:
        with mesh_context(mesh):
            holder["state"], metrics = compiled.train_step(holder["state"], batch)
        return float(jax.block_until_ready(metrics["loss"]))

    options = compiled.compiler_options
    peak = lambda: mfu_lib.measure_matmul_peak_tflops(cfg.dtype, n=peak_n, repeats=8, compiler_options=options)
    return Side(name, one, peak, "jax " + mfu_lib.kernel_path_name(cfg.dtype, options))


def _torch_peak_tflops(dtype, n: int = 1536, repeats: int = 8) -> float:
    import torch
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e12


def torch_side(name: str, cfg, batch_np: dict, autocast_bf16: bool, threads: int, peak_n: int = 1536) -> Side:
    import contextlib

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
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast_bf16 else contextlib.nullcontext

    def one() -> float:
        with autocast():
            logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    dtype = torch.bfloat16 if autocast_bf16 else torch.float32
    return Side(name, one, lambda: _torch_peak_tflops(dtype, peak_n),
                f"torch.matmul:{str(dtype).removeprefix('torch.')}")


# ----------------------------------------------------------------------------- the run


def run_interleaved(sides: list[Side], repeats: int, steps_per_repeat: int, warmup: int) -> None:
    for side in sides:
        for i in range(warmup):
            t0 = time.perf_counter()
            side.last_loss = side.step()
            print(f"  {side.name}: warm-up step {i + 1}/{warmup}: {time.perf_counter() - t0:.2f}s",
                  file=sys.stderr, flush=True)
    started = time.perf_counter()
    for r in range(repeats):
        order = sides[r % len(sides):] + sides[:r % len(sides)]  # rotate who goes first
        line = []
        for side in order:
            for _ in range(steps_per_repeat):
                t0 = time.perf_counter()
                side.last_loss = side.step()
                side.times.append(time.perf_counter() - t0)
            line.append(f"{side.name} {statistics.median(side.times[-steps_per_repeat:]):.2f}s")
        done = r + 1
        eta = (time.perf_counter() - started) / done * (repeats - done)
        print(f"  repeat {done}/{repeats}: {', '.join(line)}  (ETA {eta:.0f}s)", file=sys.stderr, flush=True)


def summarize(side: Side, tokens: int, flops: float) -> dict:
    best, median = min(side.times), statistics.median(side.times)
    return {"step_time_s_best": best, "step_time_s_median": median,
            "tokens_per_s_best": tokens / best, "tokens_per_s_median": tokens / median,
            "model_tflops_per_s_median": flops / median / 1e12,
            "peak_tflops_per_s": side.peak_tflops, "peak_path": side.peak_path,
            "mfu_best": flops / best / 1e12 / side.peak_tflops,
            "mfu_median": flops / median / 1e12 / side.peak_tflops,
            "loss_last": side.last_loss, "step_times_s": [round(t, 4) for t in side.times]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_gin", default="configs/models/small.gin")
    parser.add_argument("--numerics_gin", default=DEFAULT_NUMERICS,
                        help="gin with our training numerics ('' = the model gin's own, fp32)")
    parser.add_argument("--onednn", choices=("auto", "on", "off"), default="auto",
                        help="oneDNN custom calls for our step on CPU (auto: on for bf16)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps_per_repeat", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch intra-op threads")
    parser.add_argument("--with_ours_fp32", action="store_true", help="also time our fp32 step")
    parser.add_argument("--skip_reference", action="store_true", help="JAX side(s) only")
    parser.add_argument("--busy_threshold", type=float, default=0.10,
                        help="share of the cores other processes may use before the run is flagged busy")
    parser.add_argument("--strict", action="store_true", help="refuse a busy machine (exit 3)")
    parser.add_argument("--peak_n", type=int, default=1536,
                        help="size n of the n×n matmul that measures each side's peak (small only for smoke runs)")
    parser.add_argument("--malloc", choices=MALLOC_CHOICES, default="tcmalloc",
                        help="the allocator both sides run with (restarts the benchmark under it)")
    args = parser.parse_args(argv)
    reexec_with_malloc(args.malloc, sys.argv[1:] if argv is None else argv)

    if args.strict:
        share = idle_check()
        if share > args.busy_threshold:
            print(f"refusing: other processes use {share:.0%} of the CPUs (--strict)", file=sys.stderr)
            sys.exit(3)

    import jax
    from patch_training import mfu as mfu_lib
    from patch_training.model import count_params, init_params

    cfg = load_model_config(args.model_gin, args.numerics_gin or None)
    batch = random_batch(cfg.vocab_size, args.batch, args.sequence_length)
    tokens = args.batch * args.sequence_length
    flops = mfu_lib.training_flops_per_step(cfg, args.sequence_length, args.batch)

    watch = CpuWatch()
    watch.start()
    print(f"building: ours ({cfg.dtype}, attention {cfg.attention_impl}, remat {cfg.remat_policy}) ...",
          file=sys.stderr, flush=True)
    sides = [jax_side("ours", cfg, batch, args.onednn, args.peak_n)]
    if args.with_ours_fp32:
        fp32_cfg = load_model_config(args.model_gin, None)
        fp32_cfg = dataclasses.replace(fp32_cfg, scan_layers=False)
        sides.append(jax_side("ours_fp32", fp32_cfg, batch, args.onednn, args.peak_n))
    if not args.skip_reference:
        sides.append(torch_side("torch_fp32", cfg, batch, autocast_bf16=False, threads=args.threads,
                                peak_n=args.peak_n))
        sides.append(torch_side("torch_bf16_autocast", cfg, batch, autocast_bf16=True, threads=args.threads,
                                peak_n=args.peak_n))
    for side in sides:
        side.peak_tflops = side.measure_peak()
    run_interleaved(sides, args.repeats, args.steps_per_repeat, args.warmup)
    contention = watch.stop()
    for side in sides:  # the peak is the best of a measurement before and one after the run
        side.peak_tflops = max(side.peak_tflops, side.measure_peak())

    result = {
        "benchmark": "train_throughput", "model": os.path.basename(args.model_gin).removesuffix(".gin"),
        "params": count_params(jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))),
        "batch": args.batch, "sequence_length": args.sequence_length, "repeats": args.repeats,
        "steps_per_repeat": args.steps_per_repeat, "cpu_threads": args.threads,
        "malloc": malloc_in_use(),
        "numerics": {"dtype": cfg.dtype, "param_dtype": cfg.param_dtype, "attention_impl": cfg.attention_impl,
                     "logits_dot_fp32": cfg.logits_dot_fp32, "remat_policy": cfg.remat_policy,
                     "scan_layers": cfg.scan_layers, "onednn": args.onednn},
        "mfu_convention": mfu_lib.MFU_METRIC, "training_flops_per_step": flops,
        "sides": {s.name: summarize(s, tokens, flops) for s in sides},
    }
    ours = result["sides"]["ours"]
    # Headline figures (median) at the top level, as before.
    result.update({"step_time_s": ours["step_time_s_median"], "tokens_per_s": ours["tokens_per_s_median"],
                   "mfu": ours["mfu_median"], "peak_tflops_per_s": ours["peak_tflops_per_s"],
                   "peak_path": ours["peak_path"]})
    for ref in ("torch_fp32", "torch_bf16_autocast"):
        if ref in result["sides"]:
            other = result["sides"][ref]
            result[f"ratio_vs_{ref}_median"] = ours["tokens_per_s_median"] / other["tokens_per_s_median"]
            result[f"ratio_vs_{ref}_best"] = ours["tokens_per_s_best"] / other["tokens_per_s_best"]
    busy = contention["others_cpu_share"] > args.busy_threshold
    result.update({"cpu_busy": busy, "cpu_contention": contention})
    if busy:
        print(f"WARNING: other processes used {contention['others_cpu_share']:.0%} of the CPUs during the run; "
              "these timings are not a measurement", file=sys.stderr, flush=True)
    print(json.dumps(result))
    if busy and args.strict:
        sys.exit(3)
    return result


if __name__ == "__main__":
    main()
