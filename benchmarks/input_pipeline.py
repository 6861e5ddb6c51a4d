"""Is the input pipeline fast enough? Pipeline tokens/s vs trainer tokens/s at the same batch shape.

`python -m benchmarks.input_pipeline [--batch 8] [--network_length 512] [--patch_size 1] [--max_tokens N]`

pipeline: `make_dataset(...)` on the default code corpus (sentencepiece 8192, cached rows), then for
each step `host_batch(step)` plus the device transfer the trainer does (`global_batch`).
trainer: the jitted AdamW train step of the `small` model on that batch shape with the trainer's CPU
numerics (`--numerics_gin`, default bf16 compute, as the main job trains), timed by
benchmarks.train_throughput's `jax_side` + `run_interleaved`. In a patch stage (K > 1) rows hold K·T
tokens, so the pipeline must deliver K× the tokens per step. Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def pipeline_tokens_per_s(dataset, batch: int, steps: int) -> dict:
    import jax
    from patch_training.partitioning import make_mesh
    from patch_training.partitioning import global_batch
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    jax.block_until_ready(global_batch(dataset.host_batch(0, batch), mesh))  # warm page cache
    t0 = time.perf_counter()
    tokens = 0
    for s in range(1, steps + 1):
        arrays = global_batch(dataset.host_batch(s, batch), mesh)
        jax.block_until_ready(arrays)
        tokens += arrays["decoder_target_tokens"].size
    dt = time.perf_counter() - t0
    return {"pipeline_tokens_per_s": tokens / dt, "pipeline_seconds_per_batch": dt / steps}


def trainer_tokens_per_s(cfg, batch: int, sequence_length: int, patch_size: int, steps: int) -> float:
    """Tokens/s of our compiled train step on a random batch of this shape (median of `steps` timed steps
    after one warm-up step), timed by train_throughput's own loop."""
    from benchmarks.train_throughput import jax_side, random_batch, run_interleaved
    side = jax_side("trainer", cfg, random_batch(cfg.vocab_size, batch, sequence_length), patch_size=patch_size)
    run_interleaved([side], repeats=steps, steps_per_repeat=1, warmup=1)
    return batch * sequence_length / statistics.median(side.times)


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.train_throughput import DEFAULT_NUMERICS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_gin", default="configs/models/small.gin")
    parser.add_argument("--numerics_gin", default=DEFAULT_NUMERICS,
                        help="the trainer's CPU numerics ('' = the model gin's own, fp32)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--network_length", type=int, default=512, help="T: positions inside the network")
    parser.add_argument("--patch_size", type=int, default=1, help="K; rows hold K·T tokens")
    parser.add_argument("--pipeline_steps", type=int, default=200)
    parser.add_argument("--trainer_steps", type=int, default=3)
    parser.add_argument("--vocab", choices=("sentencepiece", "byte"), default="sentencepiece")
    parser.add_argument("--max_tokens", type=int, default=None,
                        help="build rows from only the corpus's leading ~N tokens (default: all of it)")
    args = parser.parse_args(argv)

    from benchmarks.train_throughput import load_model_config
    from patch_training.data.factory import make_dataset
    from patch_training.data.vocab import get_vocabulary

    cfg = load_model_config(args.model_gin, args.numerics_gin or None)
    sequence_length = args.network_length * args.patch_size
    t0 = time.perf_counter()
    vocab = get_vocabulary(kind=args.vocab, vocab_size=cfg.vocab_size)
    dataset = make_dataset(task="code_corpus", split="train", sequence_length=sequence_length, vocab=vocab,
                           patch_size=args.patch_size, max_tokens=args.max_tokens)
    prepare_s = time.perf_counter() - t0
    print(f"dataset ready in {prepare_s:.1f}s: {dataset!r}", file=sys.stderr, flush=True)
    pipe = pipeline_tokens_per_s(dataset, args.batch, args.pipeline_steps)

    trainer_tps = trainer_tokens_per_s(cfg, args.batch, sequence_length, args.patch_size, args.trainer_steps)
    result = {"benchmark": "input_pipeline", "batch": args.batch, "sequence_length": sequence_length,
              "patch_size": args.patch_size, "vocab": args.vocab, "numerics": cfg.dtype,
              "dataset_prepare_s": prepare_s, **pipe, "trainer_tokens_per_s": trainer_tps,
              "headroom": pipe["pipeline_tokens_per_s"] / trainer_tps,
              "pipeline_is_bottleneck": pipe["pipeline_tokens_per_s"] < trainer_tps}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
