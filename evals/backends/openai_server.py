"""An OpenAI-compatible HTTP server over a `JaxModel` (the library half of `python -m evals.serve`).

Routes: GET /v1/models, /health, /tokenizer_info; POST /v1/completions, /v1/chat/completions, /tokenize,
/detokenize (the request and response fields are in `evals/backends/openai_routes.py`). /v1/models also
reports `fingerprint` and `vocab_size`, so clients can key caches and size distributions.

Every handler thread hands its rows to one `Scheduler`, whose thread owns the model and decodes all
requests in one continuous batch. What a real client meets here:
- `stream: true` answers with server-sent events (`data: {chunk}` ... `data: [DONE]`), chunked;
- a client that goes away (closed socket, noticed within ~0.1 s, or a failed write) has its rows cancelled;
- a full queue answers 429 with Retry-After; an optional API key (Bearer) answers 401 otherwise;
- bad requests (malformed JSON, wrong types, an oversized body, a prompt or max_tokens beyond the context)
  answer 400 with one line, an unknown model 404, and the server keeps serving.
"""
from __future__ import annotations

import hmac
import json
import logging
import select
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from evals.backends.jax_backend import JaxModel
from evals.backends.openai_routes import BadRequest, ClientGone, ModelNotFound, ModelService
from evals.backends.serve_scheduler import QueueFull, Scheduler, SchedulerFailed
from patch_training.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_CAP = 2048            # the engine's cache is rows x context slots; see make_server
DEFAULT_MAX_BODY_BYTES = 16 << 20


def make_handler(service: ModelService) -> type[BaseHTTPRequestHandler]:
    """The request handler; the API key and the body limit are read from the server (`OpenAIServer`)."""
    get_routes = {"/v1/models": service.models, "/models": service.models,
                  "/tokenizer_info": service.tokenizer_info, "/v1/tokenizer_info": service.tokenizer_info}
    post_routes = {"/v1/completions": service.completions, "/v1/chat/completions": service.chat,
                   "/tokenize": service.tokenize, "/detokenize": service.detokenize,
                   "/v1/tokenize": service.tokenize, "/v1/detokenize": service.detokenize}
    decoding = {service.completions, service.chat}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # through logging, not stderr noise per request
            log.debug("%s " + fmt, self.address_string(), *args)

        # -------------------------------------------------------------- replies
        def _send(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error",
                   headers: dict[str, str] | None = None, error_code: str | None = None) -> None:
            self._send(code, {"error": {"message": message, "type": kind, "param": None,
                                        "code": error_code or str(code)}}, headers)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _stream(self, events: Iterator[Any]) -> None:
            """Server-sent events over chunked transfer encoding; the caller has already pulled the first
            (acceptance) item, so a full queue became a 429 before these headers."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in events:
                    if event is not None:
                        self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ClientGone):
                log.info("%s: the client left mid-stream; its rows are cancelled", self.path)
                self.close_connection = True
            except Exception as e:  # noqa: BLE001 - headers are out: say it in the stream, then close
                log.exception("internal error while streaming %s", self.path)
                self.close_connection = True
                try:
                    self._chunk(b"data: " + json.dumps({"error": {"message": f"{type(e).__name__}: {e}",
                                                                  "type": "server_error"}}).encode() + b"\n\n")
                except OSError:
                    pass
            finally:
                events.close()

        def _client_gone(self) -> bool:
            """The peer closed its side (a readable socket with nothing to read). A client waiting for its
            answer sends nothing, so readable-and-empty means it has gone."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):
                return True

        def _authorized(self) -> bool:
            api_key = self.server.api_key
            if not api_key:
                return True
            got = self.headers.get("Authorization", "")
            return hmac.compare_digest(got.encode(), f"Bearer {api_key}".encode())

        def _deny(self) -> None:
            self._error(401, "missing or wrong API key: send 'Authorization: Bearer <key>' (the server's --api_key)",
                        headers={"WWW-Authenticate": "Bearer"}, error_code="invalid_api_key")

        # -------------------------------------------------------------- methods
        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/health":
                return self._send(200, {"status": "ok", **service.scheduler.stats()})
            route = get_routes.get(path)
            if route is None:
                return self._error(404, f"no route GET {self.path}", error_code="not_found")
            if not self._authorized():
                return self._deny()
            return self._send(200, route())

        def _read_body(self) -> dict:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise BadRequest("chunked request bodies are not accepted; send Content-Length")
            raw = self.headers.get("Content-Length")
            try:
                length = int(raw) if raw is not None else 0
                if length < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise BadRequest(f"bad Content-Length {raw!r}") from None
            limit = self.server.max_body_bytes
            if length > limit:
                self.close_connection = True   # the body stays unread: this connection cannot be reused
                raise BadRequest(f"request body of {length} bytes is over this server's limit of {limit}")
            data = self.rfile.read(length) if length else b""
            if not data:
                raise BadRequest("the request needs a JSON object body")
            try:
                body = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadRequest(f"the request body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            return body

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            route = post_routes.get(path)
            if route is None:
                self.close_connection = True   # the body is never read
                return self._error(404, f"no route POST {self.path}", error_code="not_found")
            if not self._authorized():
                self.close_connection = True
                return self._deny()
            t0 = time.monotonic()
            try:
                body = self._read_body()
                result = route(body, self._client_gone) if route in decoding else route(body)
                if isinstance(result, dict):
                    log.info("%s: %d choice(s) in %.2fs", path, len(result.get("choices", ())), time.monotonic() - t0)
                    return self._send(200, result)
                next(result)                   # accepted (or QueueFull / a bad request, raised here)
            except (BadRequest, ValueError, UserError) as e:
                return self._error(400, str(e))
            except ModelNotFound as e:
                return self._error(404, str(e), error_code="model_not_found")
            except QueueFull as e:
                return self._error(429, str(e), "rate_limit_error", {"Retry-After": str(e.retry_after_s)},
                                   error_code="rate_limit_exceeded")
            except ClientGone:
                log.info("%s: the client left after %.2fs; its rows are cancelled", path, time.monotonic() - t0)
                self.close_connection = True
                return
            except SchedulerFailed as e:
                return self._error(503, str(e), "server_error")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            except Exception as e:  # noqa: BLE001 - the server must answer, not die
                log.exception("internal error on %s", path)
                return self._error(500, f"internal error: {type(e).__name__}: {e}", "server_error")
            self._stream(result)

    return Handler


class OpenAIServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose close also stops the scheduler thread."""
    daemon_threads = True
    request_queue_size = 256   # a burst of clients connects before the accept loop catches up

    def __init__(self, address, handler, service: ModelService, api_key: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.service = service
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.scheduler = service.scheduler
        try:
            super().__init__(address, handler)
        except BaseException:
            self.scheduler.close()
            raise

    def server_close(self) -> None:
        super().server_close()
        self.scheduler.close()


def make_server(model: JaxModel, *, host: str = "127.0.0.1", port: int = 0, model_name: str = "patch-training",
                api_key: str | None = None, rows: int | None = None, context: int | None = None,
                chunk_steps: int = 16, max_waiting: int = 256,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_logprobs: int = 20) -> OpenAIServer:
    """A bound server (port 0 = any free port: read `server.server_address`); call serve_forever().

    rows: engine rows decoding at once (default: the model's batch_size). context: prompt + completion tokens
    per row (default: the model's max_seq_len, capped at 2048: the cache holds rows x context slots per
    layer). chunk_steps: decode steps between the scheduler's looks at new, cancelled and streamed rows.
    max_waiting: samples that may wait for a row before new requests get 429. max_logprobs: the most top
    log-probs per token a stream may ask for (the engine records them as it samples, only while a live row
    asked; 0 turns the recording off).
    """
    cap = int(getattr(model.config, "max_seq_len", 0) or DEFAULT_CONTEXT_CAP)
    context = min(cap, DEFAULT_CONTEXT_CAP) if context is None else int(context)
    if not 1 < context <= cap:
        raise UserError(f"context {context}: must be in [2, {cap}] (the model's max_seq_len)")
    if not 0 <= int(max_logprobs) <= 20:
        raise UserError(f"max_logprobs {max_logprobs}: must be in [0, 20] (OpenAI's top_logprobs range)")
    scheduler = Scheduler(model, rows=rows or model.batch_size, context=context, chunk_steps=chunk_steps,
                          max_waiting=max_waiting, max_logprobs=max_logprobs)
    service = ModelService(model, model_name, scheduler)
    return OpenAIServer((host, port), make_handler(service), service, api_key, max_body_bytes)
