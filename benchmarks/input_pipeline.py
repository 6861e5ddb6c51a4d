"""Is the input pipeline fast enough? Pipeline tokens/s vs trainer tokens/s at the same batch shape.

`python -m benchmarks.input_pipeline [--batch 8] [--network_length 512] [--patch_size 1]`

pipeline: `make_dataset(...)` on the default code corpus (sentencepiece 8192, cached rows), then for
each step `host_batch(step)` plus the device transfer the trainer does (`global_batch`).
trainer: the jitted AdamW train step of the `small` model on that batch shape (from
benchmarks.train_throughput). In a patch stage (K > 1) rows hold K·T tokens, so the pipeline must
deliver K× the tokens per step. Prints one JSON object as its last line.
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_gin", default="configs/models/small.gin")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--network_length", type=int, default=512, help="T: positions inside the network")
    parser.add_argument("--patch_size", type=int, default=1, help="K; rows hold K·T tokens")
    parser.add_argument("--pipeline_steps", type=int, default=200)
    parser.add_argument("--trainer_steps", type=int, default=3)
    parser.add_argument("--vocab", choices=("sentencepiece", "byte"), default="sentencepiece")
    args = parser.parse_args(argv)

    from benchmarks.train_throughput import jax_step_times, load_model_config, random_batch
    from patch_training.data.factory import make_dataset
    from patch_training.data.vocab import get_vocabulary

    cfg = load_model_config(args.model_gin)
    sequence_length = args.network_length * args.patch_size
    t0 = time.perf_counter()
    vocab = get_vocabulary(kind=args.vocab, vocab_size=cfg.vocab_size)
    dataset = make_dataset(task="code_corpus", split="train", sequence_length=sequence_length, vocab=vocab,
                           patch_size=args.patch_size)
    prepare_s = time.perf_counter() - t0
    print(f"dataset ready in {prepare_s:.1f}s: {dataset!r}", file=sys.stderr, flush=True)
    pipe = pipeline_tokens_per_s(dataset, args.batch, args.pipeline_steps)

    batch = random_batch(cfg.vocab_size, args.batch, sequence_length)
    times = jax_step_times(cfg, batch, args.trainer_steps, 1, patch_size=args.patch_size)
    trainer_tps = args.batch * sequence_length / statistics.median(times)
    result = {"benchmark": "input_pipeline", "batch": args.batch, "sequence_length": sequence_length,
              "patch_size": args.patch_size, "vocab": args.vocab, "dataset_prepare_s": prepare_s,
              **pipe, "trainer_tokens_per_s": trainer_tps,
              "headroom": pipe["pipeline_tokens_per_s"] / trainer_tps,
              "pipeline_is_bottleneck": pipe["pipeline_tokens_per_s"] < trainer_tps}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
