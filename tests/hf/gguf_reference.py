"""What transformers' own GGUF loader says about SmolLM2-135M-Instruct (Q4_1): token ids, chat renderings,
the top logits at every position of a few prompts, and greedy continuations. Written once to
`data/smollm2_q4_1_transformers.json` for the pinned file (its sha256 is recorded and checked), so `make test`
compares our import against these numbers without loading the file through transformers each run (~25 s);
`make test-interop` recomputes them live and compares again.

    .venv/bin/python -m tests.hf.gguf_reference          # rewrite the reference (needs the --hf extra)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "smollm2_q4_1_transformers.json"
QUESTIONS = ["Write a Python function that adds two numbers.",
             "What is the capital of France? Answer in one sentence."]
TEXTS = [
    "The capital of France is",
    "def add(a, b):\n    return a + b\n\nprint(add(12345, 678))  # 13023\n",
    "Héllo wörld — naïve café, 日本語のテキスト, emoji 🙂🚀, Ünïcödé.",
    "   indented\n\n\ttabs and  double  spaces\r\nwindows line 3.14159 1,000,000",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "x = [i**2 for i in range(10) if i % 3 != 0]; y = {'k': None, \"v\": True}",
]
CONVERSATIONS = [[{"role": "user", "content": q}] for q in QUESTIONS] + [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}]]
TOP_K = 8            # logits kept per position: the top ones, where a wrong import would show first
GREEDY_TOKENS = 64   # transformers' greedy continuation of the two chat prompts


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compute(gguf_file: Path, greedy_tokens: int = GREEDY_TOKENS) -> dict:
    import numpy as np
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                              dtype=torch.float32).eval()
    renders = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in CONVERSATIONS]
    prompts = [tok(r, add_special_tokens=False)["input_ids"] for r in renders[:2]]
    prompts.append(tok(TEXTS[1], add_special_tokens=False)["input_ids"])
    logits = []
    with torch.no_grad():
        for ids in prompts:
            out = model(torch.as_tensor([ids])).logits[0].float().numpy()
            top = np.argsort(-out, axis=-1)[:, :TOP_K]
            logits.append({"ids": ids, "top_ids": top.tolist(),
                           "top_logits": np.take_along_axis(out, top, -1).round(5).tolist()})
        greedy = [model.generate(torch.as_tensor([ids]), max_new_tokens=greedy_tokens, min_new_tokens=greedy_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
                  for ids in prompts[:2]]
    return {"gguf_sha256": sha256(gguf_file), "transformers": transformers.__version__,
            "text_ids": [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS],
            "prompt_hi": tok("hi")["input_ids"], "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id,
            "chat_renders": renders, "logits": logits,
            "greedy": [{"prompt": ids, "tokens": g} for ids, g in zip(prompts, greedy)]}


def main() -> None:
    from patch_training.pretrained import smollm2_gguf_path
    ref = compute(smollm2_gguf_path())
    REFERENCE_FILE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE_FILE.write_text(json.dumps(ref) + "\n")
    print(f"wrote {REFERENCE_FILE} ({REFERENCE_FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
