"""OpenAI-compatible HTTP backend (vLLM, our `evals.serve`, hosted APIs): completions and chat completions.

- bounded concurrency (a thread pool of `concurrency` requests in flight);
- retries on connection errors, timeouts, 429 and 5xx with capped exponential backoff plus jitter,
  waiting at least what a `Retry-After` header asks (capped too); other 4xx fail at once;
- a per-request timeout; after the last retry one `UserError` line names the endpoint and the cause
  (results already returned, and so cached by the caller, are kept);
- log-probs where the server gives them. `token_logprobs` are the server's values for the chosen tokens.
  With `Sampling.return_dist` the top-k log-probs of every step are asked for (with token ids, a vLLM
  extension our server also honours); `mean_dist` is then a [V + 1] vector: the averaged top-k mass by
  token id, and the rest of the probability as the last entry (the residual bucket), `approximate=True`.
"""
from __future__ import annotations

import concurrent.futures as cf
import email.utils
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator, Sequence

import numpy as np

from evals.model_api import Completion, Sampling, chat_parts, fingerprint_of
from patch_training.errors import UserError

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(Exception):
    """One failed attempt (retryable or not), with the server's Retry-After when it sent one."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAIModel:
    """`LanguageModel` over an OpenAI-compatible endpoint (base URL such as http://host:8000/v1)."""

    def __init__(self, endpoint: str, model_name: str | None = None, *, chat: bool | None = None,
                 concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 1.0,
                 backoff_cap_s: float = 30.0, api_key: str | None = None, top_logprobs: int = 20,
                 vocab_size: int | None = None):
        self.base = endpoint.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.api_key = api_key
        self.top_logprobs = top_logprobs
        self.force_chat = chat
        self.info: dict[str, Any] = {}
        self.model_name = model_name or self._discover_model()
        self.vocab_size = vocab_size or self.info.get("vocab_size")
        self._fingerprint = fingerprint_of("http", self.model_name, self.info.get("fingerprint") or self.base)
        self._local = threading.local()

    # ------------------------------------------------------------------ transport
    def _discover_model(self) -> str:
        models = self._request("GET", "/models", None).get("data") or []
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise UserError(f"{self.base}/models lists no model; pass --model_name")
        self.info = models[0]
        return str(models[0]["id"])

    def _once(self, method: str, path: str, body: dict | None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise EndpointError(f"HTTP {e.code}: {' '.join(detail.split())}", retryable=e.code in RETRY_STATUS,
                                retry_after=_retry_after(e.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EndpointError(f"cannot reach the endpoint ({reason})", retryable=True) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise EndpointError("the endpoint answered with something that is not JSON", retryable=True) from None

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(method, path, body)
            except EndpointError as e:
                if not e.retryable or attempt == self.max_retries:
                    tries = f" after {attempt + 1} attempt(s)" if e.retryable else ""
                    raise UserError(f"{method} {self.base}{path}: {e}{tries}") from None
                wait = min(self.backoff_cap_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
                if e.retry_after is not None:
                    wait = max(wait, min(e.retry_after, self.backoff_cap_s))
                log.warning("%s %s: %s; retrying in %.1fs (attempt %d/%d)", method, path, e, wait, attempt + 1,
                            self.max_retries)
                time.sleep(wait)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ LanguageModel
    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _use_chat(self, sampling: Sampling) -> bool:
        return sampling.chat if self.force_chat is None else self.force_chat

    def _body(self, prompt: str, n: int, sampling: Sampling, chat: bool) -> dict:
        body: dict[str, Any] = {"model": self.model_name, "n": n, "max_tokens": sampling.max_new_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
        if sampling.top_k:
            body["top_k"] = sampling.top_k  # vLLM extension
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        k = self.top_logprobs if sampling.return_dist else 0
        if sampling.return_dist:
            body["return_tokens_as_token_ids"] = True  # vLLM extension: tokens as "token_id:N"
        if chat:
            user, prefix = chat_parts(prompt)
            body["messages"] = [{"role": "user", "content": user}]
            if prefix:  # the answer lead opens the assistant turn (vLLM's continue_final_message; ours too)
                body["messages"].append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            body["logprobs"] = True
            if k:
                body["top_logprobs"] = k
        else:
            body["prompt"] = prompt
            body["logprobs"] = max(k, 1)
        return body

    def _one_prompt(self, prompt: str, n: int, sampling: Sampling) -> list[Completion]:
        chat = self._use_chat(sampling)
        resp = self._request("POST", "/chat/completions" if chat else "/completions",
                             self._body(prompt, n, sampling, chat))
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise UserError(f"{self.base}: asked for {n} choices, got {len(choices)}")
        return [self._parse_choice(c, chat, sampling) for c in choices]

    def _parse_choice(self, choice: dict, chat: bool, sampling: Sampling) -> Completion:
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        steps = []  # (token, logprob, {token: logprob})
        lp = choice.get("logprobs")
        if chat and isinstance(lp, dict) and isinstance(lp.get("content"), list):
            for e in lp["content"]:
                steps.append((e.get("token"), e.get("logprob"),
                              {t.get("token"): t.get("logprob") for t in e.get("top_logprobs") or []}))
        elif not chat and isinstance(lp, dict) and isinstance(lp.get("token_logprobs"), list):
            tops = lp.get("top_logprobs") or [None] * len(lp["token_logprobs"])
            for tok, v, top in zip(lp.get("tokens") or [], lp["token_logprobs"], tops):
                steps.append((tok, v, top or {}))
        ids = [_token_id(t) for t, _, _ in steps]
        completion = Completion(text=text or "", token_ids=[i for i in ids if i is not None] if all(
            i is not None for i in ids) else [], token_logprobs=[float(v) for _, v, _ in steps if v is not None],
            finish_reason=finish, approximate=sampling.return_dist)
        if sampling.return_dist:
            completion.mean_dist = self._mean_dist([top for _, _, top in steps])
        return completion

    def _mean_dist(self, tops: list[dict]) -> np.ndarray | None:
        if not tops or not self.vocab_size:
            if not self.vocab_size:
                log.warning("%s: the vocabulary size is unknown (pass vocab_size); no mean_dist", self.base)
            return None
        dist = np.zeros(int(self.vocab_size) + 1, np.float64)
        for top in tops:
            mass = 0.0
            for tok, v in top.items():
                tid = _token_id(tok)
                if tid is None or v is None or not 0 <= tid < self.vocab_size:
                    continue
                p = float(np.exp(v))
                dist[tid] += p
                mass += p
            dist[-1] += max(0.0, 1.0 - mass)
        return (dist / len(tops)).astype(np.float32)

    def generate_iter(self, prompts: Sequence[str], n: int, sampling: Sampling) -> Iterator[tuple[int, list[Completion]]]:
        """(prompt index, completions) in completion order, `concurrency` requests in flight."""
        with cf.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._one_prompt, p, n, sampling): i for i, p in enumerate(prompts)}
            try:
                for f in cf.as_completed(futures):
                    yield futures[f], f.result()
            finally:
                for f in futures:
                    f.cancel()

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        out: list[list[Completion] | None] = [None] * len(prompts)
        for i, completions in self.generate_iter(prompts, n, sampling):
            out[i] = completions
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Echo the context + continuation with log-probs and sum the continuation's tokens (by text offset),
        as lm-evaluation-harness does against completions endpoints."""
        def one(req: tuple[str, str]) -> float:
            context, continuation = req
            resp = self._request("POST", "/completions", {
                "model": self.model_name, "prompt": context + continuation, "max_tokens": 1, "echo": True,
                "logprobs": 1, "temperature": 0.0})
            choice = (resp.get("choices") or [{}])[0]
            lp = choice.get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not isinstance(offsets, list) or not isinstance(values, list):
                raise UserError(f"{self.base}: the server does not return echoed prompt log-probs "
                                "(completions with echo + logprobs); loglikelihood needs them")
            total, seen = 0.0, False
            end = len(context) + len(continuation)   # the one generated token lies beyond the echo
            for off, v in zip(offsets, values):
                if len(context) <= off < end and v is not None:
                    total += float(v)
                    seen = True
            if not seen and continuation:
                raise UserError(f"{self.base}: no echoed tokens fall in the continuation {continuation[:30]!r}")
            return total

        with cf.ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))


def _token_id(token: Any) -> int | None:
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token[len("token_id:"):])
        except ValueError:
            return None
    return None
