"""An OpenAI-compatible HTTP server over a `JaxModel` (the library half of `python -m evals.serve`).

Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health.
Honoured request fields: prompt (text, list of texts, token ids, list of id lists) / messages, n, max_tokens,
temperature (OpenAI's default 1.0), top_p, top_k and return_tokens_as_token_ids (vLLM extensions), seed,
stop, logprobs (completions: int top-k; chat: bool + top_logprobs), echo (with max_tokens 0 for scoring).
Log-probs are under the raw distribution (softmax of the logits at temperature 1). One request runs on the
model at a time (the decoding engine batches within a request: n samples, several prompts).
/v1/models also reports `fingerprint` and `vocab_size`, so clients can key caches and size distributions.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from evals.backends.jax_backend import JaxModel, _first_stop, _ids_seed, _prompt_seed, _tokens_covering
from evals.model_api import Sampling
from patch_training.errors import UserError

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    pass


def _num(body: dict, name: str, kind, default, lo=None, hi=None):
    v = body.get(name, default)
    if v is None:
        v = default
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise BadRequest(f"'{name}' must be an integer")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise BadRequest(f"'{name}' must be a number")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadRequest(f"'{name}' must be in [{lo}, {hi}], got {v}")
    return kind(v)


class ModelService:
    """Turns OpenAI request bodies into JaxModel calls and back."""

    def __init__(self, model: JaxModel, model_name: str):
        self.model = model
        self.model_name = model_name
        self.lock = threading.Lock()

    def models(self) -> dict:
        cfg = self.model.config
        return {"object": "list", "data": [{
            "id": self.model_name, "object": "model", "created": 0, "owned_by": "patch_training",
            "fingerprint": self.model.fingerprint, "vocab_size": int(cfg.vocab_size),
            "max_model_len": int(getattr(cfg, "max_seq_len", 0))}]}

    # ------------------------------------------------------------------ helpers
    def _sampling(self, body: dict, max_default: int) -> tuple[Sampling, int]:
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else (stop or [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop' must be a string or a list of strings")
        n = _num(body, "n", int, 1, 1, 128)
        max_tokens = _num(body, "max_tokens", int, max_default, 0, 1 << 16)
        max_tokens = _num(body, "max_completion_tokens", int, max_tokens, 0, 1 << 16)
        try:
            s = Sampling(max_new_tokens=max(1, max_tokens), temperature=_num(body, "temperature", float, 1.0, 0.0),
                         top_p=_num(body, "top_p", float, 1.0), top_k=max(0, _num(body, "top_k", int, 0)),
                         seed=_num(body, "seed", int, 0), stop=tuple(stop))
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return s, (n if max_tokens > 0 else 0)

    def _tok(self, tid: int, as_ids: bool) -> str:
        return f"token_id:{tid}" if as_ids else self.model.vocab.decode([tid])

    def _prompts(self, prompt: Any) -> list[tuple[list[int], str]]:
        """(ids, seed text) per prompt; token-id prompts are taken as they are."""
        if isinstance(prompt, str):
            prompt = [prompt]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt:
            raise BadRequest("'prompt' must be a string, a list of strings, or token ids")
        out = []
        for p in prompt:
            if isinstance(p, str):
                out.append((self.model.prompt_ids(p, chat=False), p))
            elif isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
                if any(not 0 <= t < self.model.config.vocab_size for t in p):
                    raise BadRequest("token ids outside the vocabulary")
                out.append((list(p), json.dumps(p)))
            else:
                raise BadRequest("each prompt must be a non-empty string or a non-empty list of token ids")
        return out

    def _generate(self, ids: list[int], seed_text: str, n: int, s: Sampling):
        if n == 0:
            return []
        seed = _prompt_seed(s.seed, seed_text) if seed_text else _ids_seed(s.seed, ids)
        return self.model.generate_ids([ids], n, s, seeds=[seed])[0]

    def _top(self, ids: list[int], start: int, k: int):
        """Top-k alternatives (and chosen log-probs) for tokens ids[start:], by one scoring pass."""
        return self.model.score([ids], [start], top_k=k)[0]

    # ------------------------------------------------------------------ routes
    def completions(self, body: dict) -> dict:
        s, n = self._sampling(body, 16)
        k = body.get("logprobs")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 20):
            raise BadRequest("'logprobs' must be an integer in [0, 20]")
        echo = bool(body.get("echo", False))
        if n == 0 and not echo:
            raise BadRequest("max_tokens 0 only makes sense with echo")
        as_ids = bool(body.get("return_tokens_as_token_ids", False))
        choices, n_prompt, n_gen = [], 0, 0
        with self.lock:
            for ids, seed_text in self._prompts(body.get("prompt")):
                n_prompt += len(ids)
                prompt_text = self.model.vocab.decode(ids)
                for c in (self._generate(ids, seed_text, n, s) if n else [None]):
                    gen = c.token_ids if c is not None else []
                    n_gen += len(gen)
                    text = (prompt_text if echo else "") + (c.text if c is not None else "")
                    choice: dict[str, Any] = {"index": len(choices), "text": text,
                                              "finish_reason": c.finish_reason if c is not None else "length"}
                    if k is not None:
                        choice["logprobs"] = self._completion_logprobs(ids, c, k, echo, as_ids)
                    else:
                        choice["logprobs"] = None
                    choices.append(choice)
        return {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_gen, "total_tokens": n_prompt + n_gen}}

    def _completion_logprobs(self, ids: list[int], c, k: int, echo: bool, as_ids: bool) -> dict:
        gen = c.token_ids if c is not None else []
        full = ids + gen
        start = 1 if echo else len(ids)
        scored = self._top(full, start, k) if (k or echo) and full[start:] else None
        tokens, lps, tops, offsets = [], [], [], []
        vocab = self.model.vocab
        first = 0 if echo else len(ids)
        base = len(vocab.decode(ids)) if not echo else 0
        for t in range(first, len(full)):
            tokens.append(self._tok(full[t], as_ids))
            offsets.append(len(vocab.decode(full[:t])) - base)
            if t == 0:
                lps.append(None)
                tops.append(None)
                continue
            j = t - start
            if t >= len(ids) and c is not None:
                lps.append(float(c.token_logprobs[t - len(ids)]))   # the engine's value for what it chose
            else:
                lps.append(float(scored["logprobs"][j]))
            if k and scored is not None:
                tops.append({self._tok(a, as_ids): float(b)
                             for a, b in zip(scored["top_ids"][j], scored["top_logprobs"][j])})
            else:
                tops.append(None)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops if k else None, "text_offset": offsets}

    def chat(self, body: dict) -> dict:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise BadRequest("'messages' must be a non-empty list of {role, content} strings")
        s, n = self._sampling(body, 256)
        if n == 0:
            raise BadRequest("max_tokens must be >= 1 for chat")
        want_lp = bool(body.get("logprobs", False))
        k = _num(body, "top_logprobs", int, 0, 0, 20) if want_lp else 0
        as_ids = bool(body.get("return_tokens_as_token_ids", False))
        prefix = ""
        if body.get("continue_final_message"):   # vLLM's extension: the last (assistant) message is continued
            if messages[-1]["role"] != "assistant" or len(messages) < 2:
                raise BadRequest("continue_final_message needs an assistant message after at least one other")
            messages, prefix = messages[:-1], messages[-1]["content"]
        with self.lock:
            ids = self.model.vocab.encode_chat(messages, assistant_prefix=prefix)
            samples = self._generate(ids, json.dumps(messages), n, s)
            choices = []
            for c in samples:
                choice: dict[str, Any] = {"index": len(choices), "finish_reason": c.finish_reason,
                                          "message": {"role": "assistant", "content": c.text}, "logprobs": None}
                if want_lp:
                    scored = self._top(ids + c.token_ids, len(ids), k) if k and c.token_ids else None
                    content = []
                    for t, (tid, lp) in enumerate(zip(c.token_ids, c.token_logprobs)):
                        top = [] if scored is None else [
                            {"token": self._tok(a, as_ids), "logprob": float(b), "bytes": None}
                            for a, b in zip(scored["top_ids"][t], scored["top_logprobs"][t])]
                        content.append({"token": self._tok(tid, as_ids), "logprob": float(lp), "bytes": None,
                                        "top_logprobs": top})
                    choice["logprobs"] = {"content": content}
                choices.append(choice)
        n_gen = sum(len(c.token_ids) for c in samples)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n_gen, "total_tokens": len(ids) + n_gen}}


def make_handler(service: ModelService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # through logging, not stderr noise per request
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(code, {"error": {"message": message, "type": kind, "code": code}})

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                return self._send(200, service.models())
            if path == "/health":
                return self._send(200, {"status": "ok"})
            return self._error(404, f"no route {self.path}")

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            route = {"/v1/completions": service.completions, "/v1/chat/completions": service.chat}.get(path)
            if route is None:
                return self._error(404, f"no route {self.path}")
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                if body.get("stream"):
                    raise BadRequest("streaming is not supported")
                if body.get("model") not in (None, service.model_name):
                    return self._error(404, f"model {body.get('model')!r} not served (this is {service.model_name!r})")
                t0 = time.monotonic()
                result = route(body)
                log.info("%s: %d choice(s) in %.2fs", path, len(result["choices"]), time.monotonic() - t0)
                return self._send(200, result)
            except (BadRequest, ValueError, UserError) as e:
                return self._error(400, str(e))
            except Exception as e:  # noqa: BLE001 - the server must answer, not die
                log.exception("internal error on %s", path)
                return self._error(500, f"internal error: {type(e).__name__}: {e}", "server_error")

    return Handler


def make_server(model: JaxModel, *, host: str = "127.0.0.1", port: int = 0,
                model_name: str = "patch-training") -> ThreadingHTTPServer:
    """A bound server (port 0 = any free port: read `server.server_address`). Call serve_forever()."""
    server = ThreadingHTTPServer((host, port), make_handler(ModelService(model, model_name)))
    server.daemon_threads = True
    return server
