"""Backends of the one model interface (`evals.model_api.LanguageModel`) and how evals open them.

    open_model(checkpoint=..., | hf_dir=..., | endpoint=..., model_name=None, cache_dir=None, batch_size=8)
    add_model_args(parser); open_model_from_args(args, default_cache_dir=None)

- `--checkpoint DIR`: our params checkpoint or trainer run dir, in-process JAX (`jax_backend`);
- `--hf_dir DIR`: an HF LLaMA directory, imported in memory; `tokenizer.json` through `tokenizers`;
- `--endpoint URL`: an OpenAI-compatible server (`http_client`), e.g. vLLM or `python -m evals.serve`.
With a cache directory the model is wrapped in `evals.gen_cache.CachedModel` (resume, re-scoring).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from evals.model_api import LanguageModel

DECODE_DTYPE_CHOICES = ("float32", "bfloat16")
from patch_training.errors import UserError


def open_model(*, checkpoint: str | None = None, hf_dir: str | None = None, endpoint: str | None = None,
               model_name: str | None = None, cache_dir: str | None = None, batch_size: int = 8,
               chat: bool | None = None, add_bos: bool | None = None, concurrency: int = 8,
               timeout_s: float = 120.0, max_retries: int = 5, vocab_size: int | None = None,
               decode_dtype: str | None = None, chat_template_dir: str | None = None) -> LanguageModel:
    """Exactly one of checkpoint / hf_dir / endpoint. `chat` forces chat formatting on (or off) for the HTTP
    backend; in-process backends follow `Sampling.chat`. `decode_dtype` (in-process only): the matmul dtype
    of generation (None: the model's own). `chat_template_dir` (HTTP only): render chat prompts in the client with
    that directory's template and send them as completions (servers that cannot continue an assistant turn)."""
    given = [n for n, v in (("checkpoint", checkpoint), ("hf_dir", hf_dir), ("endpoint", endpoint)) if v]
    if len(given) != 1:
        raise UserError(f"give exactly one of --checkpoint, --hf_dir, --endpoint (got {given or 'none'})")
    if endpoint and decode_dtype:
        raise UserError("--decode_dtype applies to in-process models (--checkpoint, --hf_dir), not to --endpoint")
    if chat_template_dir and not endpoint:
        raise UserError("--chat_template_dir applies to --endpoint; in-process models use their own template")
    if endpoint:
        from evals.backends.http_client import OpenAIModel
        model: Any = OpenAIModel(endpoint, model_name, chat=chat, concurrency=concurrency, timeout_s=timeout_s,
                                 max_retries=max_retries, api_key=os.environ.get("OPENAI_API_KEY"),
                                 vocab_size=vocab_size, chat_template_dir=chat_template_dir)
    else:
        from evals.backends.jax_backend import load_jax_model
        model = load_jax_model(checkpoint=checkpoint, hf_dir=hf_dir, batch_size=batch_size, add_bos=add_bos,
                               decode_dtype=decode_dtype)
    if cache_dir:
        from evals.gen_cache import CachedModel
        model = CachedModel(model, cache_dir, chunk=max(batch_size, concurrency if endpoint else batch_size))
    return model


def add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The model flags every eval CLI shares. `required=False` for CLIs that offer another source of
    answers (e.g. SolverLearner's harness-checking backends) and check for a model themselves."""
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument("--checkpoint", help="params checkpoint or trainer run dir (in-process JAX)")
    src.add_argument("--hf_dir", help="HF LLaMA directory: safetensors + tokenizer.json/tokenizer.model")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    g = parser.add_argument_group("model")
    g.add_argument("--model_name", default=None, help="model id at the endpoint (default: the first it lists)")
    g.add_argument("--label", default=None, help="the run's name for the model (its manifest name), kept in the eval "
                                                 "record (default: the checkpoint, HF dir or endpoint)")
    g.add_argument("--batch_size", type=int, default=8, help="rows decoded together (in-process)")
    g.add_argument("--chat", action="store_true", help="format prompts with the model's chat template")
    g.add_argument("--decode_dtype", choices=DECODE_DTYPE_CHOICES, default=None,
                   help="in-process generation's matmul dtype (default: the model's, fp32 for ours); bfloat16 is "
                        "faster on CPU, logits within bf16 rounding (part of the generation-cache key)")
    g.add_argument("--add_bos", action=argparse.BooleanOptionalAction, default=None,
                   help="put BOS before prompts (default: what the tokenizer config says; off for our checkpoints)")
    g.add_argument("--cache_dir", default=None, help="generation cache (default: the eval's own, in --out)")
    g.add_argument("--no_cache", action="store_true", help="do not read or write the generation cache")
    g.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    g.add_argument("--timeout_s", type=float, default=120.0, help="per HTTP request")
    g.add_argument("--max_retries", type=int, default=5, help="HTTP retries (capped exponential backoff)")
    g.add_argument("--vocab_size", type=int, default=None, help="HTTP: vocabulary size for approximate mean_dist")
    g.add_argument("--chat_template_dir", default=None,
                   help="HTTP with --chat: render chat prompts in the client with this directory's chat template (the "
                        "model's checkpoint or HF dir) and send them to /completions; needed where the server cannot "
                        "continue an assistant turn (llama-cpp-python) and a prompt has an answer lead (SolverLearner)")


def open_model_from_args(args: argparse.Namespace, default_cache_dir: str | None = None) -> LanguageModel:
    """The model an eval CLI's flags name, with progress lines on (rows done, tokens/s, ETA)."""
    cache = None if getattr(args, "no_cache", False) else (getattr(args, "cache_dir", None) or default_cache_dir)
    if getattr(args, "batch_size", 8) < 1:
        raise UserError("--batch_size must be >= 1")
    model = open_model(checkpoint=args.checkpoint, hf_dir=args.hf_dir, endpoint=args.endpoint,
                      model_name=getattr(args, "model_name", None), cache_dir=cache,
                      batch_size=getattr(args, "batch_size", 8),
                      chat=True if (args.endpoint and getattr(args, "chat", False)) else None,
                      add_bos=getattr(args, "add_bos", None), concurrency=getattr(args, "concurrency", 8),
                      timeout_s=getattr(args, "timeout_s", 120.0), max_retries=getattr(args, "max_retries", 5),
                      vocab_size=getattr(args, "vocab_size", None), decode_dtype=getattr(args, "decode_dtype", None),
                      chat_template_dir=getattr(args, "chat_template_dir", None))
    for layer in (model, getattr(model, "inner", None)):   # the cache's line per chunk, the engine's inside one
        if layer is not None and hasattr(layer, "progress"):
            layer.progress = True
    return model
