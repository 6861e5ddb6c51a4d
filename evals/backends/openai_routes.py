"""The routes of `evals.serve`: OpenAI request bodies -> engine rows and scoring passes -> response bodies.

Honoured request fields:
- /v1/completions: prompt (text, list of texts, token ids, list of id lists), n, max_tokens, temperature
  (OpenAI's default 1.0), top_p, seed, stop, logprobs (top-k count), echo (with max_tokens 0 for scoring),
  stream + stream_options.include_usage, and vLLM's extensions top_k, ignore_eos, return_tokens_as_token_ids.
- /v1/chat/completions: messages (string content, or a list of text parts), the same sampling fields,
  logprobs (bool) + top_logprobs, stream, and vLLM's continue_final_message.
- /tokenize, /detokenize, /tokenizer_info at the server root, in vLLM's shapes (lm-evaluation-harness's
  remote tokenizer strips `/v1/...` from its base URL and asks there).
Log-probs are under the raw distribution (softmax of the logits at temperature 1). Every request's rows go
to the one scheduler (`serve_scheduler.Scheduler`); a sample's tokens depend on its prompt, seed and
settings only, never on what else is decoding. While streaming, each chunk carries the log-probs (and the
top-k alternatives, recorded by the engine as it samples) of the tokens whose text it completes. Fields we
cannot honour (penalties, logit_bias, best_of, suffix, echo while streaming) are refused with one line,
not ignored.
"""
from __future__ import annotations

import dataclasses
import json
import queue
import time
import uuid
from typing import Any, Callable, Iterator

import jax

from evals.backends.jax_backend import JaxModel, _first_stop, _ids_seed, _prompt_seed
from evals.backends.serve_scheduler import Scheduler, SchedulerFailed
from evals.decode_engine import Row
from evals.model_api import Sampling
from evals.sampling import SamplingConfig


class BadRequest(ValueError):
    """A request we answer with 400 and this message."""


class ModelNotFound(LookupError):
    """The body names a model this server does not serve (404)."""


class ClientGone(Exception):
    """The client closed its connection while its request was decoding."""


# Fields clients may send that would change the answer, and the only value we can honour for each.
_UNHONOURED = {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": None, "best_of": None,
               "suffix": None, "repetition_penalty": 1, "min_tokens": 0, "use_beam_search": False}


def _num(body: dict, name: str, kind, default, lo=None, hi=None):
    v = body.get(name, default)
    if v is None:
        v = default
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise BadRequest(f"'{name}' must be an integer, got {json.dumps(v)[:40]}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise BadRequest(f"'{name}' must be a number, got {json.dumps(v)[:40]}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadRequest(f"'{name}' must be in [{lo}, {hi}], got {v}")
    return kind(v)


def _flag(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(f"'{name}' must be true or false, got {json.dumps(v)[:40]}")
    return v


class _Sample:
    """One engine row seen from the request: stop strings cut it on the host, text streams out of it."""

    def __init__(self, service: "ModelService", ids: list[int], key: Any, limit: int, sampling: Sampling,
                 ignore_eos: bool, record_top: bool = False):
        self.service = service
        self.prompt = ids
        self.sampling = sampling
        self.row = Row(prompt=ids, key=key, limit=limit, stop_on_eos=not ignore_eos, record_top=record_top,
                       sampling=SamplingConfig(sampling.temperature, sampling.top_k, sampling.top_p))
        self.sent_tokens = 0          # tokens whose log-probs were already streamed
        self.finished = False
        self.completion = None        # model_api.Completion once finished
        self.stop_token = None        # the stop token (e.g. EOS) that ended it in the engine, if one did
        self.sent = 0                 # characters already streamed
        # A stop string may still be completing at the end of the text: hold that many characters back.
        self.holdback = max((len(s) for s in sampling.stop if s), default=1) - 1

    def update(self) -> None:
        """Read the row's latest snapshot; end the sample at a stop string (and free its row)."""
        if self.finished:
            return
        row = self.row
        if row.done:
            if row.result is None:
                raise SchedulerFailed(self.service.scheduler.error or "the row was dropped")
            self.stop_token = row.result.stop_token
            self._finish(row.result.token_ids, row.result.logprobs, "stop" if row.result.stopped else "length")
        elif self.sampling.stop:
            ids, lps = row.token_ids, row.logprobs
            if _first_stop(self.service.model.vocab.decode(ids), self.sampling.stop) is not None:
                self.service.scheduler.cancel([row])
                self._finish(ids, lps, "stop")

    def _finish(self, ids: list[int], lps: list[float], finish: str) -> None:
        n = min(len(ids), len(lps))   # two attributes written one after the other by the scheduler thread
        self.completion = self.service.model._completion(list(ids[:n]), list(lps[:n]), finish, self.sampling)
        self.finished = True

    def delta(self) -> str:
        """Text not streamed yet that no stop string can still claim (all of it once finished)."""
        if self.finished:
            text, end = self.completion.text, len(self.completion.text)
        else:
            text = self.service.model.vocab.decode(self.row.token_ids)
            end = len(text) - self.holdback
            while end > 0 and text[end - 1] == "\ufffd":   # an unfinished multi-byte character
                end -= 1
        if end <= self.sent:
            return ""
        out, self.sent = text[self.sent:end], end
        return out

    def token_delta(self) -> list[tuple[int, float, list[int], list[float], int]]:
        """(id, log-prob, top ids, top log-probs, text offset) of the tokens not streamed yet whose text the
        streamed text now covers (every token left once finished; call after `delta`). The offset counts
        characters from the completion's start."""
        row, vocab = self.row, self.service.model.vocab
        if self.finished:
            ids, lps, end = self.completion.token_ids, self.completion.token_logprobs, len(self.completion.token_ids)
        else:
            ids, lps = row.token_ids, row.logprobs
            end = self.sent_tokens
            while end < min(len(ids), len(lps)) and len(vocab.decode(ids[:end + 1])) <= self.sent:
                end += 1
        tops_ids, tops_lps = row.top_ids, row.top_logprobs   # read after the tokens: at least as long
        out = [(int(ids[t]), float(lps[t]), tops_ids[t] if t < len(tops_ids) else [],
                tops_lps[t] if t < len(tops_lps) else [], len(vocab.decode(ids[:t])))
               for t in range(self.sent_tokens, end)]
        self.sent_tokens = end
        return out


class ModelService:
    """Turns OpenAI request bodies into scheduler work and back (see the module docstring)."""

    def __init__(self, model: JaxModel, model_name: str, scheduler: Scheduler):
        self.model = model
        self.model_name = model_name
        self.scheduler = scheduler
        self.context = scheduler.context

    def check_model(self, body: dict) -> None:
        name = body.get("model")
        if name not in (None, self.model_name):
            raise ModelNotFound(f"model {json.dumps(name)[:80]} is not served here (this server serves "
                                f"{self.model_name!r}; GET /v1/models)")

    def models(self) -> dict:
        cfg = self.model.config
        return {"object": "list", "data": [{
            "id": self.model_name, "object": "model", "created": 0, "owned_by": "patch_training",
            "fingerprint": self.model.fingerprint, "vocab_size": int(cfg.vocab_size),
            "max_model_len": self.context}]}

    # ------------------------------------------------------------------ tokenizer routes (vLLM's shapes)
    def tokenizer_info(self) -> dict:
        v = self.model.vocab
        return {"tokenizer_class": type(v).__name__, "name": v.name, "eos_token": v.eos_text, "bos_token": v.bos_text,
                "pad_token": None, "add_bos_token": bool(v.add_bos), "chat_template": v.chat_template,
                "model_max_length": self.context, "vocab_size": int(v.vocab_size),
                "eos_token_ids": list(v.eos_ids), "bos_token_id": v.bos_id}

    def tokenize(self, body: dict) -> dict:
        self.check_model(body)
        special = _flag(body, "add_special_tokens", True)
        if "messages" in body:
            ids = self.model.vocab.encode_chat(self._messages(body)[0])
        elif isinstance(body.get("prompt"), str):
            text = body["prompt"]
            ids = self.model.vocab.encode_prompt(text) if special else self.model.vocab.encode(text)
        else:
            raise BadRequest("'prompt' must be a string (or send 'messages')")
        return {"count": len(ids), "max_model_len": self.context, "tokens": ids, "token_strs": None}

    def detokenize(self, body: dict) -> dict:
        self.check_model(body)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise BadRequest("'tokens' must be a list of token ids")
        self._check_ids(tokens)
        return {"prompt": self.model.vocab.decode(tokens)}

    # ------------------------------------------------------------------ request parsing
    def _check_ids(self, ids: list[int]) -> None:
        bad = [t for t in ids if not 0 <= t < self.model.config.vocab_size]
        if bad:
            raise BadRequest(f"token ids outside the vocabulary [0, {self.model.config.vocab_size}): {bad[:5]}")

    def _sampling(self, body: dict, max_default: int) -> tuple[Sampling, int, bool]:
        """(Sampling with max_new_tokens >= 1, n (0 = max_tokens 0: score only), max_tokens given?)."""
        for name, honoured in _UNHONOURED.items():
            value = body.get(name)
            if value is not None and value != honoured and not (name == "best_of" and value == body.get("n", 1)):
                raise BadRequest(f"'{name}' is not supported by this server (got {json.dumps(value)[:40]})")
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else (stop or [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("'stop' must be a string or a list of strings")
        n = _num(body, "n", int, 1, 1, 128)
        given = body.get("max_tokens") is not None or body.get("max_completion_tokens") is not None
        max_tokens = _num(body, "max_tokens", int, max_default, 0, None)
        max_tokens = _num(body, "max_completion_tokens", int, max_tokens, 0, None)
        try:
            s = Sampling(max_new_tokens=max(1, max_tokens), temperature=_num(body, "temperature", float, 1.0, 0.0, 100.0),
                         top_p=_num(body, "top_p", float, 1.0), top_k=max(0, _num(body, "top_k", int, 0)),
                         seed=_num(body, "seed", int, 0, -(1 << 63), (1 << 63) - 1),
                         stop=tuple(stop))
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return s, (n if max_tokens > 0 else 0), given

    def _fit(self, s: Sampling, prompt_len: int, given: bool, what: str) -> Sampling:
        """The prompt and its completion must fit the context (the engine's cache)."""
        room = self.context - prompt_len
        if room < 1:
            raise BadRequest(f"{what} has {prompt_len} tokens; this server's context is {self.context} tokens "
                             "(prompt + completion), so no token could be generated")
        if s.max_new_tokens > room:
            if not given:   # a default, not the client's ask: shrink it to what fits
                return dataclasses.replace(s, max_new_tokens=room)
            raise BadRequest(f"max_tokens {s.max_new_tokens} plus {what} ({prompt_len} tokens) exceed this "
                             f"server's context of {self.context} tokens")
        return s

    def _prompts(self, prompt: Any) -> list[tuple[list[int], str]]:
        """(ids, seed text) per prompt; token-id prompts are taken as they are."""
        if isinstance(prompt, str):
            prompt = [prompt]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt:
            raise BadRequest("'prompt' must be a string, a list of strings, or token ids")
        out = []
        for p in prompt:
            if isinstance(p, str):
                out.append((self.model.prompt_ids(p, chat=False), p))
            elif isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
                self._check_ids(p)
                out.append((list(p), ""))
            else:
                raise BadRequest("each prompt must be a non-empty string or a non-empty list of token ids")
        return out

    def _messages(self, body: dict) -> tuple[list[dict], str]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of {role, content}")
        out = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):   # OpenAI's content parts: text only
                if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                           for p in content):
                    raise BadRequest("only text content parts are supported")
                content = "".join(p["text"] for p in content)
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(content, str):
                raise BadRequest("'messages' must be a non-empty list of {role, content} with string content")
            out.append({"role": m["role"], "content": content})
        prefix = ""
        if _flag(body, "continue_final_message"):   # vLLM's extension: the last (assistant) message is continued
            if out[-1]["role"] != "assistant" or len(out) < 2:
                raise BadRequest("continue_final_message needs an assistant message after at least one other")
            out, prefix = out[:-1], out[-1]["content"]
        return out, prefix

    def _samples(self, ids: list[int], seed_text: str, n: int, s: Sampling, ignore_eos: bool,
                 record_top: bool = False) -> list[_Sample]:
        # Sample j is keyed as JaxModel.generate_ids keys it (fold_in(fold_in(seed, 0), j)), so a served sample
        # equals the in-process one.
        seed = _prompt_seed(s.seed, seed_text) if seed_text else _ids_seed(s.seed, ids)
        base = jax.random.fold_in(jax.random.key(seed), 0)
        return [_Sample(self, ids, jax.random.fold_in(base, j), s.max_new_tokens, s, ignore_eos, record_top)
                for j in range(n)]

    # ------------------------------------------------------------------ running
    def _drive(self, samples: list[_Sample], gone: Callable[[], bool]) -> Iterator[_Sample | None]:
        """Submit the samples' rows, yield None once they are accepted (QueueFull is raised before that), then
        each sample as it grows or ends. The rows still decoding are cancelled when the client goes, when the
        caller closes the generator, or on any error."""
        if len(samples) > self.scheduler.max_waiting:
            raise BadRequest(f"this request asks for {len(samples)} samples; the server queues at most "
                             f"{self.scheduler.max_waiting} at a time")
        events: queue.Queue = queue.Queue()
        for smp in samples:
            smp.row.watch = lambda _row, smp=smp: events.put(smp)
        self.scheduler.submit([smp.row for smp in samples])
        try:
            yield None
            last_check = time.monotonic()
            while not all(smp.finished for smp in samples):
                try:
                    smp = events.get(timeout=0.1)
                except queue.Empty:
                    smp = None
                if time.monotonic() - last_check > 0.1:
                    last_check = time.monotonic()
                    if gone():
                        raise ClientGone()
                if smp is not None and not smp.finished:
                    smp.update()
                    yield smp
        finally:
            self.scheduler.cancel([smp.row for smp in samples if not smp.row.done])

    def _score(self, rows: list[list[int]], starts: list[int], k: int):
        return self.scheduler.call(lambda: self.model.score(rows, starts, top_k=k))

    def _tok(self, tid: int, as_ids: bool) -> str:
        return f"token_id:{tid}" if as_ids else self.model.vocab.decode([tid])

    # ------------------------------------------------------------------ /v1/completions
    def completions(self, body: dict, gone: Callable[[], bool]) -> dict | Iterator[dict]:
        self.check_model(body)
        s, n, given = self._sampling(body, 16)
        k = body.get("logprobs")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 20):
            raise BadRequest("'logprobs' must be an integer in [0, 20]")
        echo, stream = _flag(body, "echo"), _flag(body, "stream")
        ignore_eos, as_ids = _flag(body, "ignore_eos"), _flag(body, "return_tokens_as_token_ids")
        if n == 0 and not echo:
            raise BadRequest("max_tokens 0 only makes sense with echo")
        prompts = self._prompts(body.get("prompt"))
        for i, (ids, _) in enumerate(prompts):
            if n:
                s = self._fit(s, len(ids), given, f"prompt {i}")
            elif len(ids) > self.context:
                raise BadRequest(f"prompt {i} has {len(ids)} tokens; this server's context is {self.context}")
        if stream:
            if echo or n == 0:
                raise BadRequest("stream=true does not combine with echo or max_tokens 0; ask without stream "
                                 "for prompt log-probs")
            self._check_stream_top(k or 0)
        jobs = [(ids, self._samples(ids, seed_text, n, s, ignore_eos, record_top=bool(stream and k)))
                for ids, seed_text in prompts]
        if stream:
            return self._stream_completions(jobs, body, gone, k, as_ids)
        for _ in self._drive([smp for _, samples in jobs for smp in samples], gone):
            pass
        choices, n_prompt, n_gen = [], 0, 0
        for ids, samples in jobs:
            n_prompt += len(ids)
            prompt_text = self.model.vocab.decode(ids) if echo else ""
            for smp in (samples or [None]):
                c = smp.completion if smp is not None else None
                n_gen += len(c.token_ids) if c is not None else 0
                choices.append({"index": len(choices), "text": prompt_text + (c.text if c is not None else ""),
                                "finish_reason": c.finish_reason if c is not None else "length",
                                "logprobs": None if k is None else self._completion_logprobs(
                                    ids, c, k, echo, as_ids, smp.stop_token if smp is not None else None)})
        return {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_gen, "total_tokens": n_prompt + n_gen}}

    def _completion_logprobs(self, ids: list[int], c, k: int, echo: bool, as_ids: bool,
                             stop_token: int | None = None) -> dict:
        """The `logprobs` object of one choice. A choice that ended on a stop token (EOS) lists that token last,
        as vLLM and OpenAI do (its text is not in `text`): a client scoring with `echo` and `max_tokens: 1`, as
        lm-eval's `local-completions` does, drops the last entry as the generated one, so without it the
        prompt's own last token would be dropped instead. Its log-prob comes from the scoring pass, which runs
        the same forward as sampling."""
        gen = c.token_ids if c is not None else []
        stop = [stop_token] if stop_token is not None and c is not None else []
        full = ids + gen + stop
        start = 1 if echo else len(ids)
        (scored,) = self._score([full], [start], k) if (k or echo or stop) and full[start:] else (None,)
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
            if t >= len(ids) and c is not None and t - len(ids) < len(c.token_logprobs):
                lps.append(float(c.token_logprobs[t - len(ids)]))   # the engine's value for what it chose
            else:
                lps.append(float(scored["logprobs"][j]))
            if k and scored is not None:
                tops.append({self._tok(a, as_ids): float(b)
                             for a, b in zip(scored["top_ids"][j], scored["top_logprobs"][j])})
            else:
                tops.append(None)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops if k else None, "text_offset": offsets}

    def _check_stream_top(self, k: int) -> None:
        most = self.scheduler.engine.spec.top_logprobs
        if k > most:
            raise BadRequest(f"this server streams at most {most} top log-probs per token (--max_logprobs); "
                             f"asked for {k}")

    def _stream_completions(self, jobs, body: dict, gone, k: int | None = None, as_ids: bool = False
                            ) -> Iterator[dict]:
        include_usage = self._include_usage(body)
        samples = [smp for _, ss in jobs for smp in ss]
        index = {id(smp): i for i, smp in enumerate(samples)}
        chunk = _chunk_maker("cmpl", "text_completion", self.model_name, include_usage)

        for smp in self._drive(samples, gone):
            if smp is None:
                yield None          # accepted: the caller may send its headers now
                continue
            text = smp.delta()
            if text or smp.finished:
                lp = None
                if k is not None:
                    toks = smp.token_delta()
                    lp = {"tokens": [self._tok(t, as_ids) for t, *_ in toks],
                          "token_logprobs": [x for _, x, *_ in toks],
                          "top_logprobs": [{self._tok(a, as_ids): float(b) for a, b in zip(ti[:k], tl[:k])}
                                           for _, _, ti, tl, _ in toks] if k else None,
                          "text_offset": [off for *_, off in toks]}
                yield chunk([{"index": index[id(smp)], "text": text, "logprobs": lp,
                              "finish_reason": smp.completion.finish_reason if smp.finished else None}])
        if include_usage:
            yield chunk([], self._usage(sum(len(ids) for ids, _ in jobs), samples))

    @staticmethod
    def _include_usage(body: dict) -> bool:
        opts = body.get("stream_options")
        if opts is None:
            return False
        if not isinstance(opts, dict):
            raise BadRequest("'stream_options' must be an object")
        return _flag(opts, "include_usage")

    @staticmethod
    def _usage(n_prompt: int, samples: list[_Sample]) -> dict:
        n_gen = sum(len(smp.completion.token_ids) for smp in samples)
        return {"prompt_tokens": n_prompt, "completion_tokens": n_gen, "total_tokens": n_prompt + n_gen}

    # ------------------------------------------------------------------ /v1/chat/completions
    def chat(self, body: dict, gone: Callable[[], bool]) -> dict | Iterator[dict]:
        self.check_model(body)
        messages, prefix = self._messages(body)
        s, n, given = self._sampling(body, 256)
        if n == 0:
            raise BadRequest("max_tokens must be >= 1 for chat")
        want_lp = _flag(body, "logprobs")
        k = _num(body, "top_logprobs", int, 0, 0, 20) if want_lp else 0
        as_ids, ignore_eos, stream = (_flag(body, "return_tokens_as_token_ids"), _flag(body, "ignore_eos"),
                                      _flag(body, "stream"))
        ids = self.model.vocab.encode_chat(messages, assistant_prefix=prefix)
        s = self._fit(s, len(ids), given, "the rendered conversation")
        if stream:
            self._check_stream_top(k)
        samples = self._samples(ids, json.dumps(messages), n, s, ignore_eos, record_top=bool(stream and k))
        if stream:
            return self._stream_chat(ids, samples, body, gone, k if want_lp else None, as_ids)
        for _ in self._drive(samples, gone):
            pass
        choices = []
        for smp in samples:
            c = smp.completion
            choice: dict[str, Any] = {"index": len(choices), "finish_reason": c.finish_reason,
                                      "message": {"role": "assistant", "content": c.text}, "logprobs": None}
            if want_lp:
                (scored,) = self._score([ids + c.token_ids], [len(ids)], k) if k and c.token_ids else (None,)
                content = []
                for t, (tid, lp) in enumerate(zip(c.token_ids, c.token_logprobs)):
                    top = [] if scored is None else [
                        {"token": self._tok(a, as_ids), "logprob": float(b), "bytes": None}
                        for a, b in zip(scored["top_ids"][t], scored["top_logprobs"][t])]
                    content.append({"token": self._tok(tid, as_ids), "logprob": float(lp), "bytes": None,
                                    "top_logprobs": top})
                choice["logprobs"] = {"content": content}
            choices.append(choice)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": self._usage(len(ids), samples)}

    def _stream_chat(self, ids: list[int], samples: list[_Sample], body: dict, gone, k: int | None = None,
                     as_ids: bool = False) -> Iterator[dict]:
        include_usage = self._include_usage(body)
        index = {id(smp): i for i, smp in enumerate(samples)}
        chunk = _chunk_maker("chatcmpl", "chat.completion.chunk", self.model_name, include_usage)

        for smp in self._drive(samples, gone):
            if smp is None:
                yield None          # accepted: the caller may send its headers now
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None} for i in range(len(samples))])
                continue
            text = smp.delta()
            toks = smp.token_delta() if k is not None else []
            if text or toks:
                lp = None if k is None else {"content": [
                    {"token": self._tok(t, as_ids), "logprob": x, "bytes": None,
                     "top_logprobs": [{"token": self._tok(a, as_ids), "logprob": float(b), "bytes": None}
                                      for a, b in zip(ti[:k], tl[:k])]} for t, x, ti, tl, _ in toks]}
                yield chunk([{"index": index[id(smp)], "delta": {"content": text}, "logprobs": lp,
                              "finish_reason": None}])
            if smp.finished:
                yield chunk([{"index": index[id(smp)], "delta": {}, "logprobs": None,
                              "finish_reason": smp.completion.finish_reason}])
        if include_usage:
            yield chunk([], self._usage(len(ids), samples))


def _chunk_maker(id_prefix: str, object_name: str, model_name: str, include_usage: bool):
    """One stream's chunk builder: every chunk of a stream shares its id and creation time, and carries a
    `usage` field (null until the last) only when the client asked for it (stream_options.include_usage)."""
    cid, created = f"{id_prefix}-{uuid.uuid4().hex[:16]}", int(time.time())

    def chunk(choices, usage=None):
        out = {"id": cid, "object": object_name, "created": created, "model": model_name, "choices": choices}
        if include_usage:
            out["usage"] = usage
        return out
    return chunk
