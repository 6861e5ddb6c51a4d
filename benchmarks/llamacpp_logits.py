"""llama.cpp's logits against ours on the same GGUF weights, and how much of the gap llama.cpp's arithmetic explains.

    python -m benchmarks.llamacpp_logits [--gguf FILE] [--checkpoint DIR] [--prompts 4] [--steps 32] [--threads N]

Needs the `interop` extra (llama-cpp-python). The prompts are the first --prompts official Case2Code rows with the
protocol's reminder, in the model's chat template, tokenized once by our tokenizer and given to every side as
token ids. The reference, `llamacpp`, is llama.cpp as its server runs the file (llama-cpp-python's `Llama`, the
library behind the server, with logits kept for every position): it prefills each prompt and decodes --steps
tokens greedily. The prompt plus that continuation is then scored teacher-forced by:
- `llamacpp_kv_f32`: the same file with an fp32 KV cache instead of llama.cpp's fp16 one;
- `llamacpp_f32`: llama.cpp on a copy of the file with every tensor dequantized to F32 (written here with the
  `gguf` library, tensors otherwise untouched) and an fp32 KV cache. Against Q4_1 / Q8_0 weights llama.cpp
  quantizes each matmul's activations to 8 bits per block of 32 values (Q8_1 / Q8_0) and multiplies integers;
  against F32 weights it multiplies fp32 by fp32. So this side is llama.cpp without its quantized arithmetic;
- `ours_fp32`: our model on the checkpoint imported from the same GGUF (`--checkpoint`, else imported here): the
  same dequantized weights, fp32 throughout;
- `ours_bf16`: the same forward with bf16 compute (what `--decode_dtype bfloat16` decodes with).
Both are the forward the evals sample and score with (the model's decode mode, fp32 KV cache).
Each is compared with the reference at the same positions: max and mean |Δlogit| over the vocabulary and top-1
agreement, on the prompt positions (llama.cpp's batched prefill) and on the generated ones (its one-token decode
steps, the greedy path its server takes). `ours_fp32` is also compared with `llamacpp_f32`: when the two agree
closely while both are far from `llamacpp`, the gap is llama.cpp's quantized arithmetic, not a difference
between the implementations. The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- the sides
def ours_logits(model, tokens: list[int], dtype: str) -> np.ndarray:
    """Teacher-forced logits [L, V] of our model as the evals sample and score with it: the model's decode mode
    (`model_decode.score_logits`, the prefill's forward) in `dtype` compute with an fp32 KV cache."""
    import jax.numpy as jnp
    from patch_training import model_decode

    key = (id(model), dtype)
    if key not in _DECODE_WEIGHTS:
        _DECODE_WEIGHTS[key] = model_decode.decode_weights(model.params, model.config, dtype)
    logits = model_decode.score_logits(_DECODE_WEIGHTS[key], jnp.asarray([tokens], jnp.int32), model.config,
                                       dtype, "float32")
    return np.asarray(logits[0], np.float32)


_DECODE_WEIGHTS: dict = {}   # (model, compute dtype) -> decode weights, made once per run


def write_f32_gguf(src: Path, dst: Path) -> None:
    """A copy of a GGUF file with every tensor dequantized to F32: same metadata (file type F32), same tensor
    names and layout (llama.cpp's own Q/K row order, which its loader expects)."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    reader = GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    writer = GGUFWriter(str(dst), arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue   # the writer writes these itself
        value = field.contents()
        if name == "general.file_type":
            value = int(LlamaFileType.ALL_F32)
        vtype = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[1]) if vtype == GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(name, value, vtype, sub_type=sub)
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        w = np.asarray(dequantize(t.data, GGMLQuantizationType(t.tensor_type)), np.float32).reshape(shape)
        writer.add_tensor(t.name, np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def llamacpp_scored(llm, seq: list[int]) -> np.ndarray:
    """Teacher-forced logits [L - 1, V] of a llama.cpp model over seq (one batched evaluation)."""
    llm.reset()
    llm.eval(seq)
    return np.array(llm.scores[:len(seq) - 1], np.float32)


def llamacpp_run(llm, prompt: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    """llama.cpp's logits at every position of prompt + its own greedy continuation, and that continuation."""
    llm.reset()
    llm.eval(prompt)
    generated = []
    for _ in range(steps):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        generated.append(tok)
        llm.eval([tok])
    # the logits row after the last token predicts a token nobody asked for: not compared
    return np.array(llm.scores[:llm.n_tokens - 1], np.float32), generated


def compare(ref: np.ndarray, other: np.ndarray) -> dict:
    diff = np.abs(ref - other)
    top1 = ref.argmax(-1) == other.argmax(-1)
    first = int(np.argmin(top1)) if not top1.all() else None
    # Where the two argmaxes differ, how far apart the other side ranks its own choice and the reference's: the
    # near ties at which greedy answers may part.
    rows = np.nonzero(~top1)[0]
    flips = other[rows, other[rows].argmax(-1)] - other[rows, ref[rows].argmax(-1)]
    return {"max_abs_dlogit": round(float(diff.max()), 4), "mean_abs_dlogit": round(float(diff.mean()), 5),
            "p99_abs_dlogit": round(float(np.percentile(diff.max(-1), 99)), 4),
            "top1_agreement": round(float(top1.mean()), 4), "positions": int(len(ref)),
            "first_top1_disagreement": first,
            "margins_at_top1_disagreements": [round(float(m), 4) for m in flips]}


def _pool(results: list[dict]) -> dict:
    """Across prompts: the worst max, position-weighted means."""
    total = sum(r["positions"] for r in results)
    flips = [m for r in results for m in r["margins_at_top1_disagreements"]]
    return {"max_abs_dlogit": max(r["max_abs_dlogit"] for r in results),
            "top1_disagreements": len(flips), "max_margin_at_top1_disagreement": max(flips, default=None),
            "mean_abs_dlogit": round(sum(r["mean_abs_dlogit"] * r["positions"] for r in results) / total, 5),
            "top1_agreement": round(sum(r["top1_agreement"] * r["positions"] for r in results) / total, 4),
            "positions": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None, help="GGUF file (default: the cached SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--checkpoint", default=None, help="our import of that file (default: imported here)")
    ap.add_argument("--data", default=None, help="Case2Code JSONL (default: the official test set)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=32, help="greedy steps llama.cpp decodes after each prompt")
    ap.add_argument("--max_prompt_tokens", type=int, default=1024, help="longer prompts are skipped")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work_dir", default=None, help="where the F32 copy of the GGUF goes (default: a temp dir)")
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
    from patch_training.pretrained import gguf_checkpoint
    from patch_training.shared_data import shared_data_path

    jax.config.update("jax_platforms", "cpu")
    gguf, ckpt = gguf_checkpoint(args.gguf, args.checkpoint, prefix="llamacpp-logits-")
    model = load_jax_model(checkpoint=str(ckpt), batch_size=1)
    rows, _ = load_rows(args.data or str(shared_data_path("case2code", "test.jsonl")), None)
    prompts = []
    for row in rows:
        ids = model.prompt_ids(eval_prompt(row), chat=True)
        if len(ids) <= args.max_prompt_tokens:
            prompts.append((row["id"], ids))
        if len(prompts) == args.prompts:
            break
    n_ctx = max(len(p) for _, p in prompts) + args.steps + 8
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="llamacpp-logits-"))
    work.mkdir(parents=True, exist_ok=True)
    f32_file = work / (gguf.stem + ".F32.gguf")
    if not f32_file.is_file():
        write_f32_gguf(gguf, f32_file)
    kw = dict(n_ctx=n_ctx, n_batch=512, logits_all=True, n_threads=args.threads, n_threads_batch=args.threads,
              verbose=False)
    f32_kv = dict(type_k=0, type_v=0)   # GGML_TYPE_F32 for the KV cache (llama.cpp's default is F16)
    reference = Llama(model_path=str(gguf), **kw)
    others = {"llamacpp_kv_f32": Llama(model_path=str(gguf), **kw, **f32_kv),
              "llamacpp_f32": Llama(model_path=str(f32_file), **kw, **f32_kv)}

    sides = list(others) + ["ours_fp32", "ours_bf16"]
    per_prompt = []
    t0 = time.monotonic()
    for row_id, ids in prompts:
        ref, generated = llamacpp_run(reference, ids, args.steps)
        seq = ids + generated
        logits = {name: llamacpp_scored(llm, seq) for name, llm in others.items()}
        logits["ours_fp32"] = ours_logits(model, seq, "float32")[:-1]
        logits["ours_bf16"] = ours_logits(model, seq, "bfloat16")[:-1]
        split = len(ids) - 1            # rows [:split] predict prompt tokens, [split:] the generated ones
        entry = {"id": row_id, "prompt_tokens": len(ids), "generated": generated}
        for name in sides:
            entry[name] = {"prompt": compare(ref[:split], logits[name][:split]),
                           "generated": compare(ref[split:], logits[name][split:])}
        # the two implementations with the same (unquantized) arithmetic
        entry["ours_fp32_vs_llamacpp_f32"] = {part: compare(logits["llamacpp_f32"][rows], logits["ours_fp32"][rows])
                                              for part, rows in (("prompt", slice(0, split)),
                                                                 ("generated", slice(split, None)))}
        per_prompt.append(entry)
        print(f"{row_id}: {len(ids)} prompt tokens; mean|dlogit| to llamacpp on generated positions: "
              + ", ".join(f"{s} {entry[s]['generated']['mean_abs_dlogit']:.3f}" for s in sides)
              + f"; ours_fp32 vs llamacpp_f32 {entry['ours_fp32_vs_llamacpp_f32']['generated']['mean_abs_dlogit']:.4f}",
              flush=True)

    parts = ("prompt", "generated")
    summary = {s: {part: _pool([e[s][part] for e in per_prompt]) for part in parts}
               for s in sides + ["ours_fp32_vs_llamacpp_f32"]}
    result = {"benchmark": "llamacpp_logits", "gguf": gguf.name, "prompts": len(per_prompt), "steps": args.steps,
              "reference": "llamacpp (the GGUF as served: quantized weights x 8-bit activations, fp16 KV cache)",
              "summary": summary, "per_prompt": per_prompt,
              "llama_cpp_python": llama_cpp_version, "threads": args.threads, "wall_s": round(time.monotonic() - t0, 1),
              "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"}
    gap = summary["ours_fp32"]["generated"]["mean_abs_dlogit"]
    if gap > 0:
        # the share of our fp32 gap to llama.cpp that is left once llama.cpp computes without quantized arithmetic
        result["gap_left_without_quantized_arithmetic"] = round(
            summary["ours_fp32_vs_llamacpp_f32"]["generated"]["mean_abs_dlogit"] / gap, 4)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
