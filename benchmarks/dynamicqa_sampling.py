"""DynamicQA sampling throughput with full-vocabulary distributions streamed to disk.

    python -m benchmarks.dynamicqa_sampling [--prompts 1000] [--num_samples 10] [--max_new_tokens 20]
        [--batch_size 32] [--checkpoint RUN_OR_CKPT_DIR] [--out DIR] [--no_share_prefill] [--compute_dtype float32|bfloat16]

Runs the eval's sampling stage (`evals.dynamicqa.sample.sample_items`: 10 samples per prompt at T=0.5,
mean distribution per sample appended to `dists.bin`) on real DynamicQA prompts (3 per row: q-only and
both contexts, rows cycled until `--prompts` is reached). Model: `--checkpoint` through
`evals.backends`, else the `small` shape (`--model`) with random weights behind a minimal adapter over
`evals.decoding.Decoder` (continuous batching, fp32; the samples of a prompt share its prefill unless
`--no_share_prefill`; mean distribution from the engine's on-device running sum) (byte-level prompts,
no stop token, so every sample runs the full `max_new_tokens`). The first chunk (compilation) is timed
apart; its rate (an upper bound: it includes compilation) gives the ETA printed before the timed run.
Last stdout line: one JSON object with prompts/s, sampled tokens/s, peak resident memory and the bytes
written per sample.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np


class _DecoderModel:
    """LanguageModel over evals.decoding.Decoder with a byte vocabulary (benchmark use only)."""

    def __init__(self, config, params, batch_size: int, max_prompt: int, share_prefill: bool = True,
                 compute_dtype: str | None = None, name: str = "small"):
        from evals.decoding import Decoder
        self.decoder = Decoder(config, params, batch_size=batch_size, share_prefill=share_prefill,
                               compute_dtype=compute_dtype)
        self.max_prompt = max_prompt
        self.name = name
        self.stats = {"prefills": 0, "copies": 0}

    @property
    def fingerprint(self) -> str:
        return f"benchmark-random-{self.name}"

    def generate(self, prompts: Sequence[str], n: int, sampling):
        from evals.model_api import Completion
        from evals.sampling import SamplingConfig
        ids = [[3 + b for b in p.encode()][-self.max_prompt:] for p in prompts]
        rows = self.decoder.generate(ids, max_new_tokens=sampling.max_new_tokens, num_samples=n,
                                     sampling=SamplingConfig(temperature=sampling.temperature,
                                                             top_p=sampling.top_p),
                                     seed=sampling.seed, stop_tokens=[], return_mean_dist=True)
        for k in self.stats:
            self.stats[k] += self.decoder.last_stats.get(k, 0)
        out = []
        for row in rows:
            comps = []
            for s in row:
                comps.append(Completion(text=" ".join(map(str, s.token_ids)), token_ids=s.token_ids,
                                        token_logprobs=s.logprobs, finish_reason=s.finish_reason,
                                        mean_dist=s.mean_dist))
            out.append(comps)
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError


def _random_model(name: str, batch_size: int, share_prefill: bool, compute_dtype: str | None):
    import jax
    from benchmarks.decode_throughput import _model_config
    from patch_training.model import init_params
    config = _model_config(name)
    params = init_params(config, jax.random.key(0))
    return (_DecoderModel(config, params, batch_size, max_prompt=config.max_seq_len - 32,
                          share_prefill=share_prefill, compute_dtype=compute_dtype, name=name),
            config.vocab_size)


def _sampled_tokens(samples_path: Path, skip_rows: set[int]) -> int:
    """Generated tokens of every sampled prompt (the q-only prompt once: it is written per variant)."""
    total = 0
    with samples_path.open() as f:
        for line in f:
            rec = json.loads(line)
            _, row, variant = rec["id"].split("/")
            if int(row) in skip_rows or (rec["condition"] == "q_only" and variant != "obj"):
                continue
            total += sum(len(s["token_logprobs"]) for s in rec["samples"])
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--num_samples", type=int, default=10)
    parser.add_argument("--max_new_tokens", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32, help="rows decoded together")
    parser.add_argument("--checkpoint", help="use this checkpoint through evals.backends")
    parser.add_argument("--model", default="small",
                        help="configs/models/<name>.gin of the random-weights model (without --checkpoint)")
    parser.add_argument("--no_share_prefill", action="store_true",
                        help="prefill every sample's prompt separately (the engine before shared prefill)")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"),
                        help="decoding engine's matmul dtype (default: the model's, fp32)")
    parser.add_argument("--dist_dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--out", help="where samples + distributions go (default: a temporary dir, removed)")
    args = parser.parse_args(argv)
    if args.checkpoint and (args.no_share_prefill or args.compute_dtype or args.model != "small"):
        # A checkpoint goes through evals.backends, whose engine settings these flags do not reach.
        parser.error("--model, --no_share_prefill and --compute_dtype apply to the random-weights model "
                     "only, not with --checkpoint")

    from evals.dynamicqa.data import load_all
    from evals.dynamicqa.sample import SamplingPlan, sample_items

    items_needed = -(-args.prompts // 3)
    loads = load_all(None, ["static", "temporal", "disputable"])
    pool = [it for r in loads.values() for it in r.items]
    # Cycle through the rows, renumbered so each work unit is distinct.
    import dataclasses
    items = [dataclasses.replace(pool[k % len(pool)], row=k) for k in range(items_needed)]
    if args.checkpoint:
        from evals.backends import open_model
        model, vocab = open_model(checkpoint=args.checkpoint, batch_size=args.batch_size), None
    else:
        model, vocab = _random_model(args.model, args.batch_size, not args.no_share_prefill,
                                     args.compute_dtype)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dqa_bench_"))
    plan = SamplingPlan(num_samples=args.num_samples, max_new_tokens=args.max_new_tokens, stop=(),
                        dist_dtype=args.dist_dtype)
    # An item is 3 prompts x num_samples rows; batch_size // 2 items make
    # whole decoder batches at the defaults (16 items = 480 rows = 15 batches of 32).
    chunk = max(1, args.batch_size // 2)
    try:
        start = time.perf_counter()
        sample_items(model, items[:chunk], out, plan, chunk_items=chunk)     # compile + warm-up
        warm_s = time.perf_counter() - start
        eta = warm_s * (len(items) - chunk) / chunk
        print(f"dynamicqa_sampling: warm-up {3 * chunk} prompts in {warm_s:.0f}s (compilation included); "
              f"timing {3 * (len(items) - chunk)} more prompts, ETA at most ~{eta / 60:.0f} min "
              f"({eta:.0f}s)", flush=True)
        start = time.perf_counter()
        sample_items(model, items, out, plan, chunk_items=chunk)
        elapsed = time.perf_counter() - start
        timed_prompts = 3 * (len(items) - chunk)
        tokens = _sampled_tokens(out / "samples.jsonl", skip_rows=set(range(chunk)))
        dist_bytes = (out / "dists.bin").stat().st_size
        samples = 3 * len(items) * args.num_samples
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {
            "benchmark": "dynamicqa_sampling", "model": args.checkpoint or f"{args.model} (random weights)",
            "share_prefill": None if args.checkpoint else not args.no_share_prefill,
            "compute_dtype": None if args.checkpoint else (args.compute_dtype or "float32"),
            "engine_prefills": getattr(model, "stats", {}).get("prefills"),
            "engine_copies": getattr(model, "stats", {}).get("copies"),
            "prompts": 3 * len(items), "timed_prompts": timed_prompts, "num_samples": args.num_samples,
            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "vocab_size": vocab, "warmup_s": round(warm_s, 2), "elapsed_s": round(elapsed, 2),
            "prompts_per_s": round(timed_prompts / elapsed, 3) if elapsed else None,
            "sampled_tokens_per_s": round(tokens / elapsed, 1) if tokens and elapsed else None,
            "peak_rss_mb": round(peak_rss_mb, 1),
            "dist_bytes_per_sample": dist_bytes // max(samples, 1),
            "dist_gb_full_dataset_at_32k": round(17067 * args.num_samples * 32000
                                                 * np.dtype(args.dist_dtype).itemsize / 1e9, 1),
        }
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
