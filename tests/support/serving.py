"""Helpers for tests that run `evals.serve` in process: a live server on a free port, a way to hold its
scheduler still (so queue and batching states are set up without racing the decode loop), raw HTTP."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Iterator

# A minimal chat template for the byte vocabulary (the tiny models ship none).
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@contextlib.contextmanager
def running_server(model, **kwargs) -> Iterator[tuple[object, str]]:
    """(server, base URL ending in /v1) of `evals.backends.openai_server.make_server(model, **kwargs)`."""
    from evals.backends.openai_server import make_server

    server = make_server(model, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield server, f"http://{host}:{port}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def held(scheduler) -> Iterator[None]:
    """The scheduler thread blocked inside a job until the block ends: submitted rows wait meanwhile."""
    entered, release = threading.Event(), threading.Event()

    def job():
        entered.set()
        release.wait(30)

    caller = threading.Thread(target=scheduler.call, args=(job,), daemon=True)
    caller.start()
    assert entered.wait(30), "the scheduler never picked up the holding job"
    try:
        yield
    finally:
        release.set()
        caller.join(30)


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def raw_request(base_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> socket.socket:
    """Send one HTTP/1.1 request on a fresh socket and return the socket (read the answer with `read_reply`)."""
    host, port = base_url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body is not None and not any(k.lower() == "content-length" for k in (headers or {})):
        head.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """(status, headers, JSON body) of a Content-Length reply."""
    f = sock.makefile("rb")
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline().strip()):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = json.loads(f.read(int(headers["content-length"]))) if "content-length" in headers else {}
    return status, headers, body


def post_json(base_url: str, path: str, payload: dict | bytes, headers: dict[str, str] | None = None):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with contextlib.closing(raw_request(base_url, "POST", path, data,
                                        {"Content-Type": "application/json", **(headers or {})})) as sock:
        return read_reply(sock)


def health(base_url: str) -> dict:
    with contextlib.closing(raw_request(base_url, "GET", "/health")) as sock:
        return read_reply(sock)[2]
