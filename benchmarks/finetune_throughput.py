"""Fine-tuning throughput: answer tokens/s and total tokens/s of the trainer on Case2Code rows.

`python -m benchmarks.finetune_throughput [--data F.jsonl|DIR] [--model small] [--sequence_length 512]
[--batch 8] [--steps 12] [--vocab sentencepiece|byte]`

Builds prefix-LM rows (prompt + answer, packed, loss on answer tokens only) from Case2Code rows
(default: the official test set in ../shared/data, 500 rows; or a synthesis directory's
train.jsonl), then trains the model with the pre-training `Trainer` (fresh params: throughput does
not depend on the weights) and reads its step times. Reports total tokens/s (every row position),
non-padding tokens/s, answer tokens/s (positions that carry loss) and the packing efficiency
(non-padding tokens / row capacity). Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    from patch_training.shared_data import shared_data_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="Case2Code JSONL file or a directory with train.jsonl")
    parser.add_argument("--model", default="small", help="configs/models/NAME.gin")
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="timed steps (after the first, compiling one)")
    parser.add_argument("--vocab", choices=("sentencepiece", "byte"), default="sentencepiece",
                        help="sentencepiece: the project's 8192-piece code tokenizer (trained once, cached)")
    args = parser.parse_args(argv)

    data = Path(args.data) if args.data else shared_data_dir() / "case2code" / "test.jsonl"
    if data.is_dir():
        data = data / "train.jsonl"
    if not data.is_file():
        print(json.dumps({"skipped": f"no Case2Code rows at {data} (pass --data)"}))
        return 0

    import jax
    from benchmarks.train_throughput import load_model_config
    from case2code_finetune import tasks
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset
    from patch_training.data.vocab import get_vocabulary
    from patch_training.metrics import METRICS_FILE, read_jsonl
    from patch_training.trainer import Trainer, TrainerConfig

    config = load_model_config(f"configs/models/{args.model}.gin")
    vocab = get_vocabulary(kind="byte") if args.vocab == "byte" else get_vocabulary(kind="sentencepiece",
                                                                                    vocab_size=8192)
    if config.vocab_size < vocab.vocab_size:
        raise SystemExit(f"model vocab_size {config.vocab_size} < vocabulary {vocab.vocab_size}")
    name = tasks.register_prompt_answer_task(name="bench_case2code", train_files=[str(data)])
    rows = make_prompt_answer_dataset(task=name, split="train", sequence_length=args.sequence_length, vocab=vocab,
                                      truncate_prompts=True)
    meta = rows.meta
    capacity = meta["num_rows"] * args.sequence_length
    answer_fraction = meta["answer_tokens"] / capacity
    packing = meta["packing_efficiency"]

    steps = args.steps + 1
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainerConfig(num_steps=steps, batch_size=args.batch, sequence_length=args.sequence_length,
                            log_every=1, plot=False)
        Trainer(tmp, config, cfg, rows, console=False).run()
        times = [r["step_time_s"] for r in read_jsonl(Path(tmp) / METRICS_FILE) if "step_time_s" in r]
    if not times:
        raise SystemExit("no timed steps (use --steps >= 2)")
    step_time = statistics.median(times)
    tokens_per_s = args.batch * args.sequence_length / step_time
    result = {
        "benchmark": "finetune_throughput", "model": args.model, "vocab": args.vocab, "data": str(data),
        "examples": meta["num_documents"], "rows": meta["num_rows"], "too_long_truncated": meta["truncated"],
        "sequence_length": args.sequence_length, "batch": args.batch, "timed_steps": len(times),
        "step_time_s": round(step_time, 4), "tokens_per_s": round(tokens_per_s, 1),
        "non_pad_tokens_per_s": round(tokens_per_s * packing, 1),
        "answer_tokens_per_s": round(tokens_per_s * answer_fraction, 1),
        "packing_efficiency": round(packing, 4), "answer_fraction": round(answer_fraction, 4),
        "devices": jax.device_count(), "backend": jax.default_backend(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
