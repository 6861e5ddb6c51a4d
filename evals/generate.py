"""Generate continuations for a JSONL file of prompts.

    python -m evals.generate --checkpoint DIR | --hf_dir DIR --prompts IN.jsonl --out OUT.jsonl \
        [--max_new_tokens 64] [--temperature 0] [--top_p 1] [--top_k 0] [--num_samples 1] [--seed 0]
        [--decode_dtype float32|bfloat16]

Prompt lines: {"id": ..., "text": "..."} or {"id": ..., "token_ids": [...]}.
Output lines: {"id": ..., "samples": [{"token_ids": [...], "text": "...", "logprobs": [...]}]}.
`--checkpoint` takes a params checkpoint or a trainer run dir; `--hf_dir` an HF LLaMA directory
(converted in memory). Malformed prompt lines are counted and reported, and skipped; the output is
written to a temporary file and renamed when complete.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from patch_training.errors import UserError, run_cli


def read_prompts(path: Path, vocab: Any, add_bos: bool) -> tuple[list[Any], list[list[int]], list[str]]:
    """(ids, token-id prompts, problems) — problems name the line and what is wrong."""
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    ids, prompts, problems = [], [], []
    bos = getattr(vocab, "bos_id", None) if vocab is not None else None
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {lineno}: not JSON ({e.msg})")
                continue
            if not isinstance(row, dict) or "id" not in row:
                problems.append(f"line {lineno}: expected an object with an 'id'")
                continue
            if "token_ids" in row:
                toks = row["token_ids"]
                if not isinstance(toks, list) or not all(isinstance(t, int) for t in toks):
                    problems.append(f"line {lineno}: 'token_ids' must be a list of integers")
                    continue
            elif isinstance(row.get("text"), str):
                if vocab is None:  # not a bad line: no text prompt can be read, so say so once and stop
                    raise UserError(f"{path} line {lineno}: a text prompt, but the model has no tokenizer "
                                    f"(no tokenizer.model or tokenizer.json); give 'token_ids' instead")
                toks = list(vocab.encode(row["text"]))
                if add_bos and bos is not None and bos >= 0:
                    toks = [int(bos)] + toks
            else:
                problems.append(f"line {lineno}: needs 'text' (string) or 'token_ids'")
                continue
            if not toks:
                problems.append(f"line {lineno}: empty prompt")
                continue
            ids.append(row["id"])
            prompts.append([int(t) for t in toks])
    return ids, prompts, problems


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="params checkpoint or trainer run dir")
    src.add_argument("--hf_dir", help="HF LLaMA directory (safetensors)")
    parser.add_argument("--prompts", required=True, help="input JSONL")
    parser.add_argument("--out", required=True, help="output JSONL")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=0)
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=8, help="rows decoded together")
    parser.add_argument("--stop_token", type=int, action="append", default=None,
                        help="stop token id (repeatable); default: the vocabulary's EOS")
    parser.add_argument("--add_bos", action="store_true", help="prepend BOS to text prompts")
    parser.add_argument("--decode_dtype", choices=("float32", "bfloat16"), default=None,
                        help="matmul dtype of the decoding engine (default: the model's dtype; "
                             "bfloat16 is ~1.4x faster on CPU, logits within bf16 rounding)")
    args = parser.parse_args(None if argv is None else list(argv))

    from evals.decoding import Decoder
    from evals.sampling import SamplingConfig
    from patch_training.contract.checkpoint import Checkpoint

    try:
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    except ValueError as e:
        raise UserError(f"sampling flags: {e}") from None
    if args.max_new_tokens < 1 or args.num_samples < 1:
        raise UserError("--max_new_tokens and --num_samples must be >= 1")
    ckpt = Checkpoint.open(args.checkpoint or args.hf_dir, hf=not args.checkpoint)
    config, params, vocab = ckpt.config, ckpt.params, ckpt.vocabulary
    ids, prompts, problems = read_prompts(Path(args.prompts), vocab, args.add_bos)
    for p in problems[:10]:
        print(f"skipped {args.prompts} {p}", file=sys.stderr)
    if problems:
        print(f"skipped {len(problems)} bad prompt line(s) in {args.prompts}", file=sys.stderr)
    for i, p in zip(ids, prompts):
        bad = [t for t in p if not 0 <= t < config.vocab_size]
        if bad:
            raise UserError(f"{args.prompts}: prompt {i!r} has token ids outside the vocabulary "
                            f"[0, {config.vocab_size}): {bad[:5]}")

    decoder = Decoder(config, params, vocab, batch_size=args.batch_size, compute_dtype=args.decode_dtype)
    start = time.time()
    results = decoder.generate(prompts, max_new_tokens=args.max_new_tokens, sampling=sampling,
                               num_samples=args.num_samples, seed=args.seed,
                               stop_tokens=args.stop_token, progress=True) if prompts else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as f:
            for i, samples in zip(ids, results):
                f.write(json.dumps({"id": i, "samples": [s.to_json() for s in samples]}) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    n_tokens = sum(len(s.token_ids) for r in results for s in r)
    print(f"wrote {len(results)} prompt(s), {n_tokens} tokens to {out} "
          f"in {time.time() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
