"""Greedy decode speed on the same rows: llama.cpp against our decoding engine (fp32 and bf16), same GGUF weights.

    python -m benchmarks.llamacpp_decode [--gguf FILE] [--checkpoint DIR] [--rows 8] [--new_tokens 256]
        [--batch 8] [--repeats 2] [--threads N]

Needs the `interop` extra (llama-cpp-python). The rows are the first --rows official Case2Code rows: the
protocol's prompt in the model's chat template, tokenized once by our tokenizer and handed to every side as the
same token ids. Every side decodes exactly --new_tokens tokens greedily per row (no stop token: equal work), and
tokens/s counts generated tokens over wall time, prefill included, as an eval run pays it:
- `llamacpp`: llama-cpp-python's `Llama.generate` (the library behind its server, without HTTP), one row after
  another: its server answers one request at a time, and llama-cpp-python has no batched generation;
- `ours_{fp32,bf16}_b1`: our engine (`evals.decoding.Decoder`) one row at a time, llama.cpp's shape;
- `ours_{fp32,bf16}_b{batch}`: our engine with --batch rows in flight (continuous batching), as the eval CLIs
  decode (`--batch_size`, default 8).
Each repeat runs every side once in turn, so a disturbance hits all of them; the first (compile / warm-up) run of
each side is not timed. Best and median over repeats. Run it under `/work/quiet` (or on an otherwise idle
machine): the CPU check of `benchmarks.decode_throughput` flags a busy run. The last stdout line is one JSON
object; `ratio` is llama.cpp's tokens/s over our best setting's (bf16 at --batch).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.decode_throughput import BUSY_CORES, CpuWatch, _idle_probe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None, help="GGUF file (default: the cached SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--checkpoint", default=None, help="our import of that file (default: imported here)")
    ap.add_argument("--data", default=None, help="Case2Code JSONL (default: the official test set)")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="our engine's rows in flight (the eval CLIs' default)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads (XLA uses all cores)")
    ap.add_argument("--idle_probe_s", type=float, default=1.0, help="seconds of watching the CPUs first (0: none)")
    ap.add_argument("--strict", action="store_true", help="refuse to report when the CPUs are busy")
    args = ap.parse_args(argv)

    from evals.backends.llamacpp_server import missing_reason
    reason = missing_reason()
    if reason:
        raise SystemExit(reason)
    import jax
    from llama_cpp import Llama, __version__ as llama_cpp_version

    from evals.backends.jax_backend import load_jax_model
    from evals.case2code.data import load_rows
    from evals.case2code.protocol import eval_prompt
    from evals.decoding import Decoder
    from patch_training.pretrained import gguf_checkpoint
    from patch_training.shared_data import shared_data_path

    jax.config.update("jax_platforms", "cpu")
    before = _idle_probe(args.idle_probe_s) if args.idle_probe_s > 0 else 0.0
    gguf, ckpt = gguf_checkpoint(args.gguf, args.checkpoint, prefix="llamacpp-decode-")
    model = load_jax_model(checkpoint=str(ckpt), batch_size=1)
    rows, _ = load_rows(args.data or str(shared_data_path("case2code", "test.jsonl")), args.rows)
    prompts = [model.prompt_ids(eval_prompt(r), chat=True) for r in rows]
    n_ctx = max(map(len, prompts)) + args.new_tokens + 8
    print(f"{len(prompts)} rows, prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.new_tokens} new tokens each, greedy", flush=True)

    llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=512, logits_all=False, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)

    def llamacpp() -> list[list[int]]:
        out = []
        for ids in prompts:
            gen = []
            # temp 0 = llama.cpp's greedy sampler; neutral penalties, as our HTTP client asks of its server
            for tok in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
                gen.append(int(tok))
                if len(gen) == args.new_tokens:
                    break
            out.append(gen)
        return out

    def ours(dtype: str, batch: int):
        decoder = Decoder(model.config, model.params, batch_size=batch, compute_dtype=dtype)

        def run() -> list[list[int]]:
            res = decoder.generate([list(p) for p in prompts], max_new_tokens=args.new_tokens, stop_tokens=[])
            return [list(r[0].token_ids) for r in res]
        return run

    sides = {"llamacpp": llamacpp}
    for dtype, short in (("float32", "fp32"), ("bfloat16", "bf16")):
        sides[f"ours_{short}_b1"] = ours(dtype, 1)
        sides[f"ours_{short}_b{args.batch}"] = ours(dtype, args.batch)

    tokens = {}
    for name, fn in sides.items():
        t = time.perf_counter()
        tokens[name] = fn()
        print(f"{name}: warm-up {time.perf_counter() - t:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in sides}
    watch = CpuWatch()
    watch.start()
    generated = len(prompts) * args.new_tokens
    for rep in range(args.repeats):
        for name, fn in sides.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(
            f"{n} {generated / times[n][-1]:.1f} tok/s" for n in sides), flush=True)
    others = watch.stop()
    cpu_busy = max(others, before) > BUSY_CORES
    if cpu_busy:
        print(f"WARNING: other processes used {others:.2f} cores on average ({before:.2f} before); "
              "not a measurement", flush=True)
        if args.strict:
            print("refusing to report (--strict)", file=sys.stderr)
            return 3

    best = {n: round(generated / min(t), 1) for n, t in times.items()}
    median = {n: round(generated / statistics.median(t), 1) for n, t in times.items()}

    def agreement(a: str, b: str) -> float:
        """Fraction of rows whose tokens agree up to the first divergence, averaged as a share of positions."""
        shares = []
        for x, y in zip(tokens[a], tokens[b]):
            same = np.asarray(x) == np.asarray(y)
            shares.append(float(np.argmin(same)) / len(x) if not same.all() else 1.0)
        return round(float(np.mean(shares)), 4)

    headline = f"ours_bf16_b{args.batch}"
    result = {
        "benchmark": "llamacpp_decode", "gguf": gguf.name, "rows": len(prompts), "new_tokens": args.new_tokens,
        "batch": args.batch, "repeats": args.repeats,
        "prompt_tokens": {"min": min(map(len, prompts)), "max": max(map(len, prompts)),
                          "mean": round(float(np.mean([len(p) for p in prompts])), 1)},
        "tokens_per_s_best": best, "tokens_per_s_median": median,
        "llamacpp_tokens_per_s": best["llamacpp"], "ours_tokens_per_s": best[headline],
        # llama.cpp over our best setting, and over each of ours
        "ratio": round(best["llamacpp"] / best[headline], 3),
        "ratio_llamacpp_over": {n: round(best["llamacpp"] / best[n], 3) for n in sides if n != "llamacpp"},
        # the share of each row's tokens before the first difference from llama.cpp's greedy tokens
        "prefix_agreement_with_llamacpp": {n: agreement("llamacpp", n) for n in sides if n != "llamacpp"},
        "cpu_busy": cpu_busy, "other_processes_cores": round(max(others, before), 3),
        "llama_cpp_python": llama_cpp_version, "llamacpp_threads": args.threads,
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
