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

Servers we did not write differ from OpenAI's contract in ways that change answers silently; the client
corrects for the ones it can see (`server_kind`, from /v1/models):
- llama.cpp (llama-cpp-python's server and llama-server) samples with a repeat penalty of 1.1 (llama-cpp-python),
  top-k 40 and min-p 0.05 unless told otherwise: a repeat penalty changes even greedy answers, so neutral values
  are sent with every request;
- llama-cpp-python serves one request at a time: more in flight only queue behind each other until they time
  out (and are retried while the server still computes them), so the client sends one at a time;
- it ignores `n`: the missing samples are asked for one request each, with seeds `seed + j`;
- it computes log-probs in Python, sorting the whole vocabulary at every generated token (and its server keeps
  every position's logits so that it can): a 2,048-token answer then takes several times as long. Of the evals
  only DynamicQA reads `token_logprobs`, and it asks for distributions (`return_dist`), so by default
  (`logprobs="auto"`) the client asks llama-cpp-python for log-probs only then; `logprobs="always"` asks anyway;
- it cannot continue an assistant turn (no `continue_final_message`; its template always opens a new turn), so
  a prompt with an answer lead needs `chat_template_dir`: the client then renders chat prompts itself with that
  directory's template and sends them to /completions;
- a context window smaller than prompt + max_tokens: llama-cpp-python cuts max_tokens to fit and then fails with
  a 500 at the window's end (an exception in its handler, so not retried, and the error line says what it
  means); a server that ends early with finish_reason "length" instead is caught by its usage count. Either way
  it is an error, not an answer.
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
                 vocab_size: int | None = None, chat_template_dir: str | None = None, logprobs: str = "auto"):
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
        if logprobs not in ("auto", "always"):
            raise ValueError(f"logprobs={logprobs!r}: expected 'auto' or 'always'")
        self.logprobs = logprobs
        self.info: dict[str, Any] = {}
        self.model_name = model_name or self._discover_model()
        if model_name:
            self._describe_named_model(model_name)
        self.vocab_size = vocab_size or self.info.get("vocab_size")
        self.server_kind = server_kind(self.info)
        if self.server_kind == LLAMA_CPP_PYTHON and self.concurrency > 1:
            log.info("%s is llama-cpp-python's server, which answers one request at a time: sending requests one "
                     "at a time (not %d), so that queued ones do not time out", self.base, self.concurrency)
            self.concurrency = 1
        # A local chat template: chat prompts are rendered here and sent as completions.
        self.chat_vocab = None
        if chat_template_dir:
            from evals.backends.text_vocab import from_hf_dir
            self.chat_vocab = from_hf_dir(chat_template_dir)
            if not self.chat_vocab.chat_template:
                raise UserError(f"--chat_template_dir {chat_template_dir}: no chat template there "
                                "(chat_template.jinja or tokenizer_config.json 'chat_template')")
        parts = ["http", self.model_name, self.info.get("fingerprint") or self.base]
        if self.chat_vocab is not None:   # other prompt text on the wire: not the same cache entries
            parts.append(f"client_chat_template={self.chat_vocab.fingerprint}:{hash_text(self.chat_vocab.chat_template)}")
        self._fingerprint = fingerprint_of(*parts)
        self._warned_n = False
        self._local = threading.local()

    # ------------------------------------------------------------------ transport
    def _discover_model(self) -> str:
        models = self._request("GET", "/models", None).get("data") or []
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise UserError(f"{self.base}/models lists no model; pass --model_name")
        self.info = models[0]
        return str(models[0]["id"])

    def _describe_named_model(self, name: str) -> None:
        """/v1/models' entry for a model named by the caller, when the server lists it (for `server_kind`)."""
        try:
            models = self._once("GET", "/models", None).get("data") or []
        except EndpointError:
            return
        for m in models:
            if isinstance(m, dict) and m.get("id") == name:
                self.info = m
                return

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
            message, retryable = f"HTTP {e.code}: {' '.join(detail.split())}", e.code in RETRY_STATUS
            if e.code == 500 and getattr(self, "server_kind", None) == LLAMA_CPP_PYTHON:
                # Its 500s are exceptions in its request handler, the same on every try. The one a user meets is
                # a full context window: it fails writing the logits of the token past the end.
                retryable = False
                message += (" (llama-cpp-python answers 500 when prompt + max_tokens overflow its context window: "
                            "start it with a larger --n_ctx)")
            raise EndpointError(message, retryable=retryable,
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
        if self.server_kind in LLAMA_CPP_KINDS:
            # llama.cpp's own defaults would reshape the distribution (its repeat penalty even changes greedy
            # answers): top_k 0 = the whole vocabulary there.
            body.update(repeat_penalty=1.0, min_p=0.0, top_k=sampling.top_k)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        k = self.top_logprobs if sampling.return_dist else 0
        # Log-probs from llama-cpp-python cost more than the decoding itself (see the module docstring).
        want_lp = (sampling.return_dist or self.logprobs == "always" or self.server_kind != LLAMA_CPP_PYTHON)
        if sampling.return_dist:
            body["return_tokens_as_token_ids"] = True  # vLLM extension: tokens as "token_id:N"
        if chat and self.chat_vocab is not None:
            user, prefix = chat_parts(prompt)
            body["prompt"] = self.chat_vocab.render_chat([{"role": "user", "content": user}]) + prefix
            if want_lp:
                body["logprobs"] = max(k, 1)
        elif chat:
            user, prefix = chat_parts(prompt)
            if prefix and self.server_kind == LLAMA_CPP_PYTHON:
                raise UserError(f"{self.base} is llama-cpp-python's server, which cannot continue an assistant turn, "
                                f"and this prompt's answer lead ({prefix[:40]!r}) must open it: pass "
                                "--chat_template_dir DIR (the model's checkpoint or HF dir) so that the client "
                                "renders the chat prompt itself")
            body["messages"] = [{"role": "user", "content": user}]
            if prefix:  # the answer lead opens the assistant turn (vLLM's continue_final_message; ours too)
                body["messages"].append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            if want_lp:
                body["logprobs"] = True
                if k:
                    body["top_logprobs"] = k
                elif self.server_kind == LLAMA_CPP_PYTHON:
                    body["top_logprobs"] = 1   # it returns no log-probs at all for a chat request without top_logprobs
        else:
            body["prompt"] = prompt
            if want_lp:
                body["logprobs"] = max(k, 1)
        return body

    def _one_prompt(self, prompt: str, n: int, sampling: Sampling) -> list[Completion]:
        chat = self._use_chat(sampling)
        as_chat = chat and self.chat_vocab is None    # a locally rendered chat prompt goes out as a completion
        path = "/chat/completions" if as_chat else "/completions"
        resp = self._request("POST", path, self._body(prompt, n, sampling, chat))
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        self._check_length(resp, choices, sampling)
        if len(choices) == 1 and n > 1:
            # The server ignores `n` (llama-cpp-python does): one request per missing sample, each seeded apart.
            if not self._warned_n:
                self._warned_n = True
                log.warning("%s answers one choice where %d were asked: asking for each sample apart "
                            "(seeds %d + j)", self.base, n, sampling.seed)
            for j in range(1, n):
                body = dict(self._body(prompt, 1, sampling, chat), seed=sampling.seed + j)
                more = self._request("POST", path, body)
                extra = more.get("choices") or []
                self._check_length(more, extra, sampling)
                choices += [dict(c, index=j) for c in extra[:1]]
        if len(choices) != n:
            raise UserError(f"{self.base}: asked for {n} choices, got {len(choices)}")
        return [self._parse_choice(c, as_chat, sampling) for c in choices]

    def _check_length(self, resp: dict, choices: list[dict], sampling: Sampling) -> None:
        """A one-choice answer cut by "length" before max_tokens was cut by the server's context window."""
        usage = resp.get("usage") or {}
        made = usage.get("completion_tokens")
        if (len(choices) == 1 and choices[0].get("finish_reason") == "length" and isinstance(made, int)
                and made < sampling.max_new_tokens):
            raise UserError(f"{self.base}: the answer stopped at {made} of max_tokens {sampling.max_new_tokens} "
                            f"tokens with finish_reason 'length': the prompt ({usage.get('prompt_tokens')} tokens) "
                            "plus max_tokens exceed the server's context window (llama.cpp: start it with a "
                            "larger --n_ctx)")

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


LLAMA_CPP_PYTHON = "llama-cpp-python"
LLAMA_SERVER = "llama-server"
LLAMA_CPP_KINDS = (LLAMA_CPP_PYTHON, LLAMA_SERVER)


def server_kind(model_entry: dict) -> str | None:
    """Which server implementation a /v1/models entry comes from, where it says so: llama-cpp-python writes
    owned_by "me", llama.cpp's own llama-server "llamacpp", our evals.serve "patch_training"."""
    owner = model_entry.get("owned_by")
    return {"me": LLAMA_CPP_PYTHON, "llamacpp": LLAMA_SERVER, "patch_training": "patch_training"}.get(owner)


def hash_text(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _token_id(token: Any) -> int | None:
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token[len("token_id:"):])
        except ValueError:
            return None
    return None
