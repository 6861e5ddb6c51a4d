"""Eval-shaped decoding: completions of very different lengths, continuous batching vs static batches.

    python -m benchmarks.decode_mixed_lengths [--model small] [--num_prompts 32] [--batch 8] [--min_new 20]
        [--max_new 1000] [--max_prompt 384] [--seed 0] [--skip_static]

Prompts are the Case2Code test set's (../shared/data/case2code/test.jsonl, the official prompt plus
call reminder), byte-tokenised for the `small` model (`--model`; random weights; ids 3 + byte, the tail kept
when longer than --max_prompt). A random model never emits a stop token, so each prompt's completion
length is forced by a per-prompt limit drawn log-uniformly from [min_new, max_new] (seeded): most
completions are short, a few are long, as in Case2Code answers.

Three runs on the same requests, greedy:
- `static_fp32`: static batching through the same engine (fp32): batches of --batch prompts in file order, each
  decoding until its longest row ends before the next starts (nothing waits while a batch decodes, so no row
  is refilled);
- `continuous_fp32`: the engine (rows refilled as they finish, prompts longest first), fp32, so its
  tokens are comparable one for one with the static run (`token_agreement`: a row's tokens do not depend on
  its batch, so it is 1 unless fp32 rounding splits a near-tie);
- `continuous_bf16`: the engine with bf16 compute (the fast setting).
Tokens/s counts the tokens actually kept (sum of the limits), so wasted steps cost the static run.
Compile time is excluded (each run is warmed on the same shapes first). Last stdout line: one JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


class _StaticBatches:
    """Static batching expressed with the one engine: `batch` prompts at a time in file order, every batch under
    one `EngineSpec` sized for the whole call (so the warm-up compiles what the timed run uses)."""

    def __init__(self, decoder, batch: int):
        self.decoder, self.batch = decoder, batch

    def generate(self, prompts, max_new_tokens, stop_tokens, progress=False):
        import jax

        from evals import decode_engine
        from evals.decoding import Sample
        from evals.sampling import SamplingConfig

        d = self.decoder
        cache_len = -(-(decode_engine.bucket_length(max(map(len, prompts))) + max(max_new_tokens)) // 64) * 64
        spec = decode_engine.EngineSpec(config=d.config, sampling=SamplingConfig(), rows=self.batch,
                                        cache_len=cache_len, max_new_tokens=max(max_new_tokens),
                                        stop_tokens=tuple(stop_tokens), return_probs=False,
                                        compute_dtype=d.compute_dtype, cache_dtype=d.cache_dtype)
        out = []
        for b0 in range(0, len(prompts), self.batch):
            part = prompts[b0:b0 + self.batch]
            keys = [jax.random.key(0)] * len(part)   # greedy: the keys are not used
            limits = max_new_tokens[b0:b0 + self.batch]
            for fin in decode_engine.run_engine(d.engine_weights(), spec, part, keys, limits, chunk_steps=d.chunk_steps):
                out.append([Sample(token_ids=fin.token_ids, logprobs=fin.logprobs)])
        return out


def _prompts(path: str, count: int, max_prompt: int, vocab_size: int) -> list[list[int]]:
    from evals.case2code.protocol import eval_prompt

    prompts = []
    with open(path) as f:
        for line in f:
            if len(prompts) == count:
                break
            row = json.loads(line)
            ids = [min(3 + b, vocab_size - 1) for b in eval_prompt(row).encode()]
            prompts.append(ids[-max_prompt:])
    if len(prompts) < count:
        raise SystemExit(f"{path}: only {len(prompts)} rows, asked for {count}")
    return prompts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="configs/models/<name>.gin (random weights)")
    parser.add_argument("--num_prompts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--min_new", type=int, default=20)
    parser.add_argument("--max_new", type=int, default=1000)
    parser.add_argument("--max_prompt", type=int, default=384, help="prompt tokens kept (the tail)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip_static", action="store_true", help="only the engine runs")
    parser.add_argument("--data", default=None, help="Case2Code test JSONL (default: shared data)")
    args = parser.parse_args(argv)

    import jax

    from benchmarks.decode_throughput import CpuWatch, _model_config
    from evals.decoding import Decoder
    from patch_training.model import init_params
    from patch_training.shared_data import shared_data_path

    jax.config.update("jax_platforms", "cpu")
    config = _model_config(args.model)
    params = init_params(config, jax.random.key(0))
    data = args.data or str(shared_data_path("case2code", "test.jsonl"))
    prompts = _prompts(data, args.num_prompts, args.max_prompt, config.vocab_size)
    rng = np.random.default_rng(args.seed)
    limits = np.exp(rng.uniform(np.log(args.min_new), np.log(args.max_new), len(prompts))).astype(int)
    limits = np.clip(limits, args.min_new, args.max_new).tolist()
    useful = int(sum(limits))
    lengths = [len(p) for p in prompts]
    print(f"{len(prompts)} Case2Code prompts ({min(lengths)}-{max(lengths)} tokens, mean "
          f"{np.mean(lengths):.0f}); completion limits {min(limits)}-{max(limits)} (mean "
          f"{np.mean(limits):.0f}); {useful} tokens to generate; batch {args.batch}", flush=True)

    runs = {"continuous_bf16": Decoder(config, params, batch_size=args.batch, compute_dtype="bfloat16"),
            "continuous_fp32": Decoder(config, params, batch_size=args.batch, compute_dtype="float32")}
    if not args.skip_static:
        runs["static_fp32"] = _StaticBatches(Decoder(config, params, batch_size=args.batch, compute_dtype="float32"),
                                             args.batch)

    results, seconds = {}, {}
    watch = CpuWatch()
    watch.start()
    for name, decoder in runs.items():
        # Compile outside the timing: the same call shapes with every limit 1 except the widest,
        # given to the longest prompt (the engine then compiles every prefill bucket and every attention
        # window it will use).
        longest = int(np.argmax(lengths))
        warm = [1] * len(prompts)
        warm[longest] = max(limits)
        start = time.perf_counter()
        decoder.generate(prompts, max_new_tokens=warm, stop_tokens=[])
        print(f"{name}: warm-up {time.perf_counter() - start:.1f}s", flush=True)
        start = time.perf_counter()
        results[name] = decoder.generate(prompts, max_new_tokens=limits, stop_tokens=[], progress=True)
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {seconds[name]:.1f}s, {useful / seconds[name]:.1f} tokens/s", flush=True)
    others = watch.stop()
    if others > 0.2:
        print(f"WARNING: other processes used {others:.2f} cores on average; not a measurement",
              flush=True)

    ids = lambda name: [r[0].token_ids for r in results[name]]
    kept = sum(len(t) for t in ids("continuous_fp32"))
    out = {
        "benchmark": "decode_mixed_lengths",
        "model": args.model,
        "num_prompts": len(prompts),
        "batch": args.batch,
        "prompt_tokens": {"min": min(lengths), "max": max(lengths), "mean": round(float(np.mean(lengths)), 1)},
        "new_token_limits": {"min": min(limits), "max": max(limits), "mean": round(float(np.mean(limits)), 1)},
        "tokens_generated": kept,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "tokens_per_s": {k: round(useful / v, 1) for k, v in seconds.items()},
        "cpu_busy": others > 0.2,
        "other_processes_cores": round(others, 3),
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
    }
    if "static_fp32" in results:
        a, b = ids("continuous_fp32"), ids("static_fp32")
        out["speedup_continuous_fp32_vs_static_fp32"] = round(seconds["static_fp32"] / seconds["continuous_fp32"], 3)
        out["speedup_continuous_bf16_vs_static_fp32"] = round(seconds["static_fp32"] / seconds["continuous_bf16"], 3)
        out["token_agreement_continuous_vs_static_fp32"] = round(
            float(np.mean([x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb)])), 4)
        # Same engine, same fp32 numerics: a row's tokens do not depend on its batch, up to fp32 rounding in
        # attention windows of other widths; a greedy split on a near-tie changes the rest of that row.
        out["rows_identical"] = round(float(np.mean([ra == rb for ra, rb in zip(a, b)])), 4)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
