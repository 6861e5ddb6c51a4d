"""llama.cpp's OpenAI-compatible server (llama-cpp-python, the `interop` extra) as a subprocess on a GGUF file.

    with LlamaCppServer(gguf_path, n_ctx=4096) as server:
        model = open_model(endpoint=server.url)          # our HTTP client, as against any server

It runs `python -m llama_cpp.server --model GGUF --chat_format chat_template.default ...`, so chat requests are
formatted by the GGUF's own template (llama-cpp-python would otherwise try to guess a built-in format from it).
The caller sizes the context window: prompt + max_tokens must fit in `n_ctx`, or llama-cpp-python cuts max_tokens
without saying so (our client turns that into an error). Threads default to every core: llama-cpp-python's own
default is half of them. Sampling defaults are not touched here: the client sends neutral values with each
request (`evals.backends.http_client`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from patch_training.errors import UserError

GGUF_CHAT_FORMAT = "chat_template.default"   # llama-cpp-python's name for the template stored in the GGUF


def missing_reason() -> str | None:
    """Why llama.cpp's server cannot run here, or None when it can."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return (f"llama-cpp-python[server] is not installed ({module} is missing): the `interop` extra, "
                    "installed by `scripts/setup.sh --interop` or `make test-interop` (it compiles llama.cpp)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaCppServer:
    """Context manager: the server is up (GET /v1/models answers) inside the `with`, and gone after it."""

    def __init__(self, gguf: str | os.PathLike, *, n_ctx: int = 4096, n_threads: int | None = None,
                 port: int | None = None, log_path: str | os.PathLike | None = None, startup_s: float = 180.0,
                 extra_args: tuple[str, ...] = ()):
        self.gguf = Path(gguf)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="llamacpp-server-", suffix=".log")[1])
        self.startup_s = startup_s
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads), "--chat_format", GGUF_CHAT_FORMAT, *self.extra_args]

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> "LlamaCppServer":
        reason = missing_reason()
        if reason:
            raise UserError(reason)
        if not self.gguf.is_file():
            raise UserError(f"GGUF file {self.gguf} does not exist")
        log = self.log_path.open("wb")
        # Its own process group, so that closing it also ends anything it started.
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = " ".join(self.log_tail(600).split())
                self.proc = None
                raise UserError(f"llama.cpp's server exited while starting (log {self.log_path}): {tail}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as resp:
                    if json.loads(resp.read()).get("data"):
                        return self
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.3)
        self.close()
        raise UserError(f"llama.cpp's server did not answer on {self.url} within {self.startup_s:.0f} s "
                        f"(log {self.log_path})")

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self.proc = None

    def __exit__(self, *exc) -> None:
        self.close()

