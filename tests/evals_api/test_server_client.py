"""The HTTP client against our own server on a real localhost socket, and against failing endpoints."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from evals.backends import open_model
from evals.backends.http_client import OpenAIModel
from evals.model_api import Sampling
from patch_training.errors import UserError

PROMPTS = ["def add(a, b):", "x = [1, 2"]


def test_http_matches_in_process(jax_model, live_server):
    client = open_model(endpoint=live_server)
    assert client.model_name == "tiny" and client.vocab_size == 264
    s = Sampling(max_new_tokens=4)
    local = jax_model.generate(PROMPTS[:1], 1, s)     # one prompt: the same compiled batch shape as the server's
    remote = client.generate(PROMPTS[:1], 1, s)
    [[a]], [[b]] = local, remote                       # one row of one sample each, for the one prompt
    assert a.text == b.text and a.finish_reason == b.finish_reason == "length"
    np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=1e-5)
    # seeded sampling: same per-prompt seed on both sides, independent of the batch
    s2 = Sampling(max_new_tokens=4, temperature=1.0, seed=3)
    assert [c.text for c in jax_model.generate(PROMPTS[:1], 2, s2)[0]] == \
           [c.text for c in client.generate(PROMPTS[:1], 2, s2)[0]]
    reqs = [("def f", "(x):"), ("abc", "d")]
    np.testing.assert_allclose(client.loglikelihood(reqs), jax_model.loglikelihood(reqs), atol=1e-4)


def test_http_distribution_is_topk_plus_residual(jax_model, live_server):
    client = OpenAIModel(live_server, top_logprobs=5)
    c = client.generate(PROMPTS[:1], 1, Sampling(max_new_tokens=4, return_dist=True))[0][0]
    assert c.approximate and c.mean_dist.shape == (265,)
    assert c.mean_dist.sum() == pytest.approx(1.0, abs=1e-4) and c.mean_dist[-1] > 0
    exact = jax_model.generate(PROMPTS[:1], 1, Sampling(max_new_tokens=4, return_dist=True))[0][0].mean_dist
    # each id's top-k mass is a lower bound of its exact mean probability; what is missing is the residual
    assert np.all(c.mean_dist[:-1] <= exact + 1e-5)
    assert c.mean_dist[-1] == pytest.approx(np.sum(exact - c.mean_dist[:-1]), abs=1e-4)
    assert c.token_ids == jax_model.generate(PROMPTS[:1], 1, Sampling(max_new_tokens=4))[0][0].token_ids


def test_server_rejects_bad_requests(live_server):
    client = OpenAIModel(live_server, max_retries=0)
    with pytest.raises(UserError, match="HTTP 400.*chat template"):
        client.generate(["hi"], 1, Sampling(chat=True))
    with pytest.raises(UserError, match="HTTP 400"):
        client._request("POST", "/completions", {"prompt": "x", "temperature": -1})


class _Flaky(BaseHTTPRequestHandler):
    """Fails the first `fails` POSTs (429 with Retry-After, then 503), then answers one completion."""
    fails = 2
    seen: list = []

    def log_message(self, *a):
        pass

    def _send(self, code, payload, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"data": [{"id": "flaky"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(time.monotonic())
        if len(self.seen) == 1:
            return self._send(429, {"error": "slow down"}, [("Retry-After", "0.3")])
        if len(self.seen) <= self.fails:
            return self._send(503, {"error": "busy"})
        self._send(200, {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop",
                                      "logprobs": {"tokens": ["o", "k"], "token_logprobs": [-0.5, -0.25]}}]})


def test_client_retries_honour_retry_after_then_give_one_line():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/v1" % server.server_address[1]
        client = OpenAIModel(url, max_retries=3, backoff_s=0.01, backoff_cap_s=1.0)
        c = client.generate(["p"], 1, Sampling(max_new_tokens=2))[0][0]
        assert c.text == "ok" and c.token_logprobs == [-0.5, -0.25] and len(_Flaky.seen) == 3
        assert _Flaky.seen[1] - _Flaky.seen[0] >= 0.3          # waited what Retry-After asked
        _Flaky.seen.clear()
        _Flaky.fails = 10
        client = OpenAIModel(url, max_retries=2, backoff_s=0.01)
        with pytest.raises(UserError, match=r"HTTP 503.*after 3 attempt"):
            client.generate(["p"], 1, Sampling(max_new_tokens=2))
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_endpoint_is_one_line():
    with pytest.raises(UserError, match="cannot reach the endpoint.*after 2 attempt"):
        OpenAIModel("http://127.0.0.1:9", max_retries=1, backoff_s=0.01, timeout_s=2)
