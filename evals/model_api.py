"""The one model interface every eval talks to (the contract; backends live in `evals/backends/`).

An eval never touches params, tokenizers or HTTP: it holds a `LanguageModel` and asks it for
samples or log-likelihoods. Backends (in-process JAX, HTTP client, test doubles) implement this
protocol; `evals.backends.open_model(...)` builds one from command-line style arguments and wraps it
in the generation cache.

Conventions every backend keeps:
- `generate(prompts, n, sampling)` returns, for each prompt, exactly `n` `Completion`s, sample j of
  prompt i seeded from (sampling.seed, i-independent prompt identity, j) so results do not depend on
  batch composition.
- `token_logprobs[t]` is log p(token_t | prefix) under the model's *raw* distribution (softmax of the
  logits at temperature 1, before top-k/top-p), the quantity lm-evaluation-harness scores with.
- `mean_dist`, when `sampling.return_dist` and the backend can, is the softmax of the raw logits at
  each generated step averaged over the generated steps: one vocabulary-sized vector (DynamicQA's
  p_s). Backends that only see top-k log-probs (HTTP) set `approximate=True` and put a residual
  bucket as the last entry.
- `finish_reason` is "stop" (a stop token or stop string ended it; the stop text is not included)
  or "length" (cut off by max_new_tokens: Case2Code counts such a completion as wrong).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How to sample. temperature 0 = greedy. Part of the generation-cache key (all fields)."""
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    stop: tuple[str, ...] = ()          # stop strings (in addition to the model's EOS)
    return_dist: bool = False           # also return the mean full-vocabulary distribution
    dist_includes_stop: bool = False    # ... averaged over every step, the one that sampled EOS/a stop included
    chat: bool = False                  # format the prompt with the model's chat template

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    def key(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        if not self.dist_includes_stop:   # added later: absent at its default, so older cache keys still match
            d.pop("dist_includes_stop")
        return d


class LeadPrompt(str):
    """A prompt whose text ends with an answer lead ("The result for A+B is", an opened python fence): it is the
    full text for a completion model, and for a chat model the user turn is the text before the lead while the
    assistant turn is opened with the lead already written (the answer continues it, as a base model's does).
    A str subclass, so every cache key, log line and backend that reads plain text sees the same prompt."""

    lead: str

    def __new__(cls, text: str, lead: str):
        if lead and not text.endswith(lead):
            raise ValueError(f"the prompt does not end with its lead {lead!r}")
        obj = super().__new__(cls, text)
        obj.lead = lead
        return obj

    @property
    def user_text(self) -> str:
        """What the user turn holds: the text without the lead."""
        return self[:len(self) - len(self.lead)].rstrip() if self.lead else str(self)


def chat_parts(prompt: str) -> tuple[str, str]:
    """(user turn, assistant prefix) of a prompt sent with chat formatting."""
    if isinstance(prompt, LeadPrompt):
        return prompt.user_text, prompt.lead
    return str(prompt), ""


@dataclasses.dataclass
class Completion:
    """One sampled continuation of one prompt."""
    text: str
    token_ids: list[int] = dataclasses.field(default_factory=list)
    token_logprobs: list[float] = dataclasses.field(default_factory=list)
    finish_reason: str = "stop"                 # "stop" | "length"
    mean_dist: np.ndarray | None = None         # [V] float32, see module docstring
    approximate: bool = False                   # log-probs / dist from top-k only (HTTP backends)

    @property
    def mean_nll(self) -> float:
        """Mean negative log-likelihood per generated token (nan for an empty completion)."""
        if not self.token_logprobs:
            return float("nan")
        return float(-np.mean(self.token_logprobs))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form without the distribution (which is large and stored apart)."""
        return {"text": self.text, "token_ids": list(self.token_ids),
                "token_logprobs": list(self.token_logprobs), "finish_reason": self.finish_reason,
                "approximate": self.approximate}


@runtime_checkable
class LanguageModel(Protocol):
    """What an eval may ask of a model."""

    @property
    def fingerprint(self) -> str:
        """Stable identity of the weights + tokenizer (+ endpoint/model name): the cache key's root."""
        ...

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        """`n` completions for each prompt (see the module docstring for the conventions)."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log p(continuation tokens | context) for each (context, continuation) pair."""
        ...


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (for backends building their fingerprint)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ScriptedModel:
    """A deterministic test double: `respond(prompt, sample_index) -> text` decides every answer.

    Used by eval tests and the harness-checking backends (oracle, rule-blind) so that evals can be
    exercised without weights. Log-likelihoods are not available (raises NotImplementedError).
    """

    def __init__(self, respond, name: str = "scripted"):
        self._respond = respond
        self._name = name

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("scripted", self._name)

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        out = []
        for p in prompts:
            row = []
            for j in range(n):
                text = self._respond(p, j)
                for s in sampling.stop:
                    if s and s in text:
                        text = text[:text.index(s)]
                row.append(Completion(text=text, finish_reason="stop"))
            out.append(row)
        return out

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        raise NotImplementedError(f"{self._name}: a scripted model has no likelihoods")
