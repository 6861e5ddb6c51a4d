"""Load on `evals.serve`: 1, 4, 16 and 64 concurrent clients sending mixed prompt and completion lengths.

    python -m benchmarks.serve_load (--checkpoint DIR | --hf_dir DIR | --model tiny|small | --endpoint URL)
        [--clients 1,4,16,64] [--requests 64] [--min_prompt 8] [--max_prompt 256] [--min_new 8] [--max_new 128]
        [--batch_size 16] [--max_model_len 512] [--decode_dtype bfloat16] [--peer_url URL | --peer llamacpp] [--seed 0]

Without --endpoint the server runs in this process (`evals.backends.openai_server.make_server`) over a
checkpoint, an HF directory, or random weights for a configs/models/<name>.gin (`--model`). Each level
sends the same --requests requests (seeded): prompt lengths log-uniform in [min_prompt, max_prompt] words
of plain text, completion lengths log-uniform in [min_new, max_new] tokens, greedy, `ignore_eos` so every
completion is as long as asked (vLLM honours it; llama-cpp-python's server does not, so `--peer llamacpp`
also sends a -100 logit bias on the model's end-of-sequence ids; `ratio_vs_peer` shows both sides' token totals). Clients are closed loops taking the next
request from one shared list, so a level's wall time is how long the server takes for the whole list.

Reported per level: completion tokens per second (usage.completion_tokens over the level's wall time),
requests per second, p50/p99 latency, errors (non-200 answers and failed connections, counted, never
fatal), and `throughput_ratio_16_vs_1`. Compiles are kept out by two untimed warm-up passes over the list.
`--peer_url` runs the same levels against another OpenAI-compatible server (a llama.cpp or vLLM serving
the same model) and reports it beside ours under "peer"; `--peer llamacpp` starts llama.cpp's own server
(llama-cpp-python, the `interop` extra) on `--peer_gguf` (default: the SmolLM2 GGUF set-up caches) with
every core, for the length of the run. The two sides run level by level, in turn (ours first at one level,
the peer first at the next), so a slow phase of the machine hits both; `ratio_vs_peer` is ours over the
peer's tokens/s at each level. Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import threading
import time
import urllib.error
import urllib.request

import numpy as np

WORDS = ("the value of each item is returned by the function when its list is sorted and then the result "
         "is printed for every case in order to check that our code works as expected").split()


def workload(count: int, min_prompt: int, max_prompt: int, min_new: int, max_new: int, seed: int) -> list[dict]:
    """`count` (prompt text, max_tokens) requests, both lengths log-uniform (most short, a few long)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = int(math.exp(rng.uniform(math.log(min_prompt), math.log(max_prompt))))
        new = int(math.exp(rng.uniform(math.log(min_new), math.log(max_new + 1))))
        out.append({"prompt": " ".join(rng.choice(WORDS, size=max(1, words))), "max_tokens": max(1, min(new, max_new))})
    return out


def _post(url: str, payload: dict, timeout_s: float, api_key: str | None) -> tuple[bool, int, str]:
    """(ok, completion tokens, error text) of one completion request."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, json.dumps(payload).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
        return True, int(body["usage"]["completion_tokens"]), ""
    except urllib.error.HTTPError as e:
        return False, 0, f"HTTP {e.code}"
    except (OSError, ValueError, KeyError) as e:
        return False, 0, type(e).__name__


def run_level(base_url: str, model: str, requests: list[dict], clients: int, timeout_s: float,
              api_key: str | None = None, extra: dict | None = None) -> dict:
    url = base_url.rstrip("/") + "/completions"
    queue = list(enumerate(requests))
    lock = threading.Lock()
    latencies, tokens, errors = [], [], {}

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                _, r = queue.pop(0)
            t0 = time.monotonic()
            ok, n, err = _post(url, {"model": model, "temperature": 0, "ignore_eos": True, **(extra or {}), **r},
                               timeout_s, api_key)
            dt = time.monotonic() - t0
            with lock:
                if ok:
                    latencies.append(dt)
                    tokens.append(n)
                else:
                    errors[err] = errors.get(err, 0) + 1

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.monotonic() - t0
    lat = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return {"clients": clients, "requests": len(requests), "ok": len(latencies), "errors": sum(errors.values()),
            "error_kinds": errors, "wall_s": round(wall, 3), "completion_tokens": int(sum(tokens)),
            "tokens_per_s": round(sum(tokens) / wall, 2), "requests_per_s": round(len(latencies) / wall, 3),
            "latency_s": {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3),
                          "max": round(float(lat.max()), 3)}}


def warm_up(base_url: str, model: str, requests: list[dict], clients: int, timeout_s: float,
            api_key: str | None, passes: int, extra: dict | None = None) -> None:
    """Untimed passes over the list. Ours needs two at the widest level: the first compiles the prefill and
    attention shapes; in the second, prompts still held by a row are copied, not prefilled (another compile).
    llama.cpp compiles nothing; one short pass loads its weights into the page cache."""
    for _ in range(passes):
        run_level(base_url, model, requests, clients, timeout_s, api_key, extra)


def _print_level(label: str, r: dict) -> None:
    print(f"{label:>5} {r['clients']:>3} clients: {r['tokens_per_s']:>8.1f} tok/s  {r['requests_per_s']:>6.2f} req/s  "
          f"p50 {r['latency_s']['p50']:>7.2f}s  p99 {r['latency_s']['p99']:>7.2f}s  errors {r['errors']}", flush=True)


def _summary(out: list[dict]) -> dict:
    by = {r["clients"]: r for r in out}
    ratio = (by[16]["tokens_per_s"] / by[1]["tokens_per_s"]) if 16 in by and 1 in by and by[1]["tokens_per_s"] else None
    return {"levels": out, "throughput_ratio_16_vs_1": round(ratio, 3) if ratio else None}


def run_side_by_side(sides: list[tuple[str, str, str, dict]], requests: list[dict], levels: list[int],
                     timeout_s: float, api_key: str | None) -> dict[str, dict]:
    """Each side is (label, base_url, model name, extra request fields). Every level runs on every side before
    the next level starts, the side order alternating between levels."""
    for i, (label, url, model, extra) in enumerate(sides):
        if i == 0:
            warm_up(url, model, requests, max(levels), timeout_s, api_key, passes=2, extra=extra)
        else:
            warm_up(url, model, requests[:4], 1, timeout_s, api_key, passes=1, extra=extra)
    out: dict[str, list[dict]] = {label: [] for label, _, _, _ in sides}
    for n, c in enumerate(levels):
        for label, url, model, extra in (sides if n % 2 == 0 else sides[::-1]):
            r = run_level(url, model, requests, c, timeout_s, api_key, extra)
            _print_level(label, r)
            out[label].append(r)
    return {label: _summary(levels_out) for label, levels_out in out.items()}


def ratios_vs_peer(ours: dict, peer: dict) -> list[dict]:
    """Ours over the peer's tokens/s at each level, with both sides' completion-token totals (equal when both
    honoured every max_tokens with ignore_eos)."""
    rows = []
    for a, b in zip(ours["levels"], peer["levels"], strict=True):
        rows.append({"clients": a["clients"], "ours_tokens_per_s": a["tokens_per_s"], "peer_tokens_per_s": b["tokens_per_s"],
                     "ratio": round(a["tokens_per_s"] / b["tokens_per_s"], 3) if b["tokens_per_s"] else None,
                     "ours_completion_tokens": a["completion_tokens"], "peer_completion_tokens": b["completion_tokens"]})
    return rows


def _served_model(args):
    from evals.backends.jax_backend import JaxModel, load_jax_model

    if args.checkpoint or args.hf_dir:
        return load_jax_model(checkpoint=args.checkpoint, hf_dir=args.hf_dir, batch_size=args.batch_size,
                              decode_dtype=args.decode_dtype)
    import jax

    from benchmarks.decode_throughput import _model_config
    from evals.backends.text_vocab import byte_text_vocab
    from patch_training.model import init_params

    config = _model_config(args.model)
    return JaxModel(config, init_params(config, jax.random.key(0)), byte_text_vocab(), batch_size=args.batch_size,
                    decode_dtype=args.decode_dtype)


def _start_peer(args, requests: list[dict]):
    """llama.cpp's server on the GGUF, sized for the longest request, or one line on why it cannot run."""
    from evals.backends.llamacpp_server import LlamaCppServer, missing_reason
    from patch_training import pretrained

    reason = missing_reason()
    if reason:
        raise SystemExit(f"--peer llamacpp: {reason}")
    gguf = args.peer_gguf or pretrained.smollm2_gguf_path()
    if not os.path.exists(gguf):
        raise SystemExit(f"--peer llamacpp: GGUF file {gguf} not found (scripts/setup.sh --models caches SmolLM2's)")
    # Words here are at most 2 tokens each in a BPE vocabulary; the context must hold prompt + completion.
    longest = max(2 * len(r["prompt"].split()) for r in requests) + args.max_new + 64
    server = LlamaCppServer(gguf, n_ctx=max(512, longest))
    server.__enter__()
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint")
    src.add_argument("--hf_dir")
    src.add_argument("--model", default=None, help="configs/models/<name>.gin with random weights (default: tiny)")
    src.add_argument("--endpoint", help="an evals.serve (or any OpenAI-compatible) base URL ending in /v1")
    ap.add_argument("--model_name", default="served", help="the model id sent in requests")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=64, help="requests per level")
    ap.add_argument("--min_prompt", type=int, default=8)
    ap.add_argument("--max_prompt", type=int, default=256, help="prompt words (log-uniform)")
    ap.add_argument("--min_new", type=int, default=8)
    ap.add_argument("--max_new", type=int, default=128, help="completion tokens (log-uniform)")
    ap.add_argument("--batch_size", type=int, default=16, help="engine rows of the in-process server")
    ap.add_argument("--max_model_len", type=int, default=None)
    ap.add_argument("--chunk_steps", type=int, default=16)
    ap.add_argument("--decode_dtype", default=None)
    peer_src = ap.add_mutually_exclusive_group()
    peer_src.add_argument("--peer_url", default=None,
                          help="another OpenAI-compatible server on the same model (llama.cpp, vLLM), run side by side")
    peer_src.add_argument("--peer", choices=["llamacpp"], default=None,
                          help="start llama.cpp's server on --peer_gguf for the run and compare with it")
    ap.add_argument("--peer_gguf", default=None, help="the GGUF file for --peer llamacpp (default: the cached SmolLM2)")
    ap.add_argument("--peer_model_name", default=None)
    ap.add_argument("--api_key", default=None)
    ap.add_argument("--timeout_s", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        raise SystemExit(f"--clients {args.clients!r}: a comma-separated list of counts >= 1")
    requests = workload(args.requests, args.min_prompt, args.max_prompt, args.min_new, args.max_new, args.seed)

    peer_server = _start_peer(args, requests) if args.peer else None
    peer_url = peer_server.url if peer_server else args.peer_url
    server = None
    if args.endpoint:
        base_url, served = args.endpoint, "endpoint"
    else:
        from evals.backends.openai_server import make_server
        model = _served_model(args if (args.checkpoint or args.hf_dir or args.model) else
                              argparse.Namespace(**{**vars(args), "model": "tiny"}))
        longest = max(len(r["prompt"]) for r in requests) + args.max_new + 8   # a character is at most a token here
        context = args.max_model_len or min(int(model.config.max_seq_len), max(256, longest))
        server = make_server(model, port=0, model_name=args.model_name, rows=args.batch_size, context=context,
                             chunk_steps=args.chunk_steps, max_waiting=max(256, 2 * args.requests))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base_url = "http://%s:%d/v1" % server.server_address[:2]
        served = args.checkpoint or args.hf_dir or f"random {args.model or 'tiny'}"
    sides = [("ours", base_url, args.model_name, {})]
    peer_extra = {}
    if args.peer == "llamacpp" and server is not None:
        # llama-cpp-python's server ignores `ignore_eos`; a -100 bias on the model's end-of-sequence ids makes
        # its completions as long as asked, so both sides decode the same number of tokens.
        peer_extra = {"logit_bias": {str(t): -100.0 for t in model.vocab.eos_ids}}
    if peer_url:
        sides.append(("peer", peer_url, args.peer_model_name or args.model_name, peer_extra))
    try:
        by_side = run_side_by_side(sides, requests, levels, args.timeout_s, args.api_key)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if peer_server is not None:
            peer_server.close()
    ours, peer = by_side["ours"], by_side.get("peer")
    result = {"benchmark": "serve_load", "served": served, "endpoint": args.endpoint, "peer_url": args.peer_url,
              "peer": None if peer is None else {**peer, "server": args.peer or "url", "extra_request_fields": peer_extra,
                                                 "gguf": str(peer_server.gguf) if peer_server else None},
              "ratio_vs_peer": ratios_vs_peer(ours, peer) if peer else None,
              "batch_size": args.batch_size if server else None, "chunk_steps": args.chunk_steps if server else None,
              "requests_per_level": args.requests,
              "prompt_words": [args.min_prompt, args.max_prompt], "new_tokens": [args.min_new, args.max_new],
              "machine": platform.processor() or platform.machine(), **ours}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
