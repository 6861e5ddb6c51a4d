"""Serve one of our checkpoints (or an HF directory) over an OpenAI-compatible API.

    python -m evals.serve --checkpoint DIR | --hf_dir DIR [--port 8000] [--host 127.0.0.1] [--model_name NAME]
        [--batch_size ROWS] [--max_model_len TOKENS] [--max_queue SAMPLES] [--api_key KEY]

Then any OpenAI-style client (the `openai` SDK, lm-evaluation-harness's local-completions and
local-chat-completions), `--endpoint http://HOST:PORT/v1` of our evals, or the data-synthesis pipeline can
call it: /v1/models, /v1/completions (echo + logprobs for scoring), /v1/chat/completions (the model's chat
template), stream=true, and /tokenize, /detokenize, /tokenizer_info at the root. Concurrent requests decode
together in one continuous batch of --batch_size rows. See `evals/backends/openai_server.py` (HTTP) and
`evals/backends/openai_routes.py` (the fields honoured).
"""
from __future__ import annotations

import argparse
import logging
from typing import Iterable

from patch_training.errors import UserError, run_cli


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="params checkpoint or trainer run dir")
    src.add_argument("--hf_dir", help="HF LLaMA directory")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve other machines)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model_name", default=None, help="the id clients send (default: the directory's name)")
    ap.add_argument("--batch_size", type=int, default=8, help="engine rows decoding at once (all requests together)")
    ap.add_argument("--max_model_len", type=int, default=None,
                    help="prompt + completion tokens per row (default: the model's max_seq_len, at most 2048)")
    ap.add_argument("--max_queue", type=int, default=256,
                    help="samples that may wait for a free row; beyond that requests get 429 + Retry-After")
    ap.add_argument("--chunk_steps", type=int, default=16,
                    help="decode steps between looks at new, cancelled and streamed rows")
    ap.add_argument("--api_key", default=None, help="require 'Authorization: Bearer KEY' (default: open)")
    ap.add_argument("--max_body_mb", type=float, default=16.0, help="largest request body accepted")
    ap.add_argument("--decode_dtype", default=None, help="float32 or bfloat16 (default: the checkpoint's)")
    ap.add_argument("--add_bos", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--max_logprobs", type=int, default=20,
                    help="most top log-probs per token a stream may ask for, recorded by the engine as it samples "
                    "(only while a live row asked); 0 turns streamed top log-probs off")
    args = ap.parse_args(None if argv is None else list(argv))
    for name in ("batch_size", "max_queue", "chunk_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)

    from pathlib import Path

    from evals.backends.jax_backend import load_jax_model
    from evals.backends.openai_server import make_server

    model = load_jax_model(checkpoint=args.checkpoint, hf_dir=args.hf_dir, batch_size=args.batch_size,
                           add_bos=args.add_bos, decode_dtype=args.decode_dtype)
    name = args.model_name or Path(args.checkpoint or args.hf_dir).resolve().name
    try:
        server = make_server(model, host=args.host, port=args.port, model_name=name, api_key=args.api_key,
                             context=args.max_model_len, chunk_steps=args.chunk_steps, max_waiting=args.max_queue,
                             max_body_bytes=int(args.max_body_mb * (1 << 20)), max_logprobs=args.max_logprobs)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = server.server_address[:2]
    print(f"serving {name} (fingerprint {model.fingerprint}) at http://{host}:{port}/v1: {args.batch_size} rows x "
          f"{server.scheduler.context} tokens, queue {args.max_queue}{', API key required' if args.api_key else ''}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    run_cli(main)
