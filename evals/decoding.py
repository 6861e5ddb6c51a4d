"""Batched autoregressive decoding with a KV cache: prefill, then one token per step, all under jit.

Layout: prompts are **left-padded** to a common length P, so every row's last prompt token sits at
slot P-1 and all rows share one cache index. Padding gets segment id 0 and real tokens 1, which
keeps the padding out of every real token's attention; rotary positions count real tokens only, so
a row's logits do not depend on how much padding it got. The whole loop (prefill + `lax.while_loop`
over steps) is one jitted function; the cache lives inside it and is updated in place.

Per step we record the chosen token, its log-probability under the model's raw distribution
(softmax of the logits at temperature 1, before any top-k/top-p filtering) and, on request, that
whole probability vector (what the DynamicQA eval averages).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evals.sampling import SamplingConfig, sample_tokens
from patch_training.model import ModelConfig, Transformer, init_cache

Array = jax.Array


@dataclasses.dataclass
class Sample:
    """One generated continuation. `probs` is [len(token_ids), V] when requested, else None."""
    token_ids: list[int]
    logprobs: list[float]
    text: str | None = None
    finish_reason: str = "length"   # "stop" when a stop token ended it (the stop token is not included)
    probs: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {"token_ids": self.token_ids, "text": self.text, "logprobs": self.logprobs,
                "finish_reason": self.finish_reason}


@dataclasses.dataclass(frozen=True)
class _LoopSpec:
    """Everything static about one compiled decode loop (hashable: a jit static argument)."""
    config: ModelConfig
    sampling: SamplingConfig
    max_new_tokens: int
    stop_tokens: tuple[int, ...]
    return_probs: bool


def _left_pad(prompts: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    lengths = np.zeros((len(prompts),), np.int32)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, length - len(p):] = p
        lengths[i] = len(p)
    return tokens, lengths


@functools.partial(jax.jit, static_argnames=("spec",))
def _decode_loop(params: Any, prompt: Array, prompt_lengths: Array, row_keys: Array, *,
                 spec: _LoopSpec) -> dict[str, Array]:
    """Prefill left-padded prompt[B, P], then generate spec.max_new_tokens tokens per row."""
    model = Transformer(spec.config)
    batch, prompt_len = prompt.shape
    n = spec.max_new_tokens
    slot = jnp.arange(prompt_len)[None, :]
    pad = prompt_len - prompt_lengths[:, None]
    segment_ids = (slot >= pad).astype(jnp.int32)
    positions = jnp.maximum(slot - pad, 0).astype(jnp.int32)

    cache = init_cache(spec.config, batch, prompt_len + n)
    logits, mutated = model.apply({"params": params, "cache": cache}, prompt, positions=positions,
                                  segment_ids=segment_ids, decode=True, mutable=["cache"])
    stop = jnp.asarray(spec.stop_tokens or (-1,), jnp.int32)
    vocab = spec.config.vocab_size

    state = {
        "cache": mutated["cache"],
        "logits": logits[:, -1],
        "step": jnp.zeros((), jnp.int32),
        "done": jnp.zeros((batch,), bool),
        "length": jnp.zeros((batch,), jnp.int32),   # tokens kept per row (stop token excluded)
        "stopped": jnp.zeros((batch,), bool),
        "tokens": jnp.zeros((batch, n), jnp.int32),
        "logprobs": jnp.zeros((batch, n), jnp.float32),
    }
    if spec.return_probs:
        state["probs"] = jnp.zeros((batch, n, vocab), jnp.float32)

    def cond(s):
        return (s["step"] < n) & ~jnp.all(s["done"])

    def body(s):
        step = s["step"]
        keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(row_keys)
        token = sample_tokens(s["logits"], keys, spec.sampling)
        log_probs = jax.nn.log_softmax(s["logits"].astype(jnp.float32), axis=-1)
        token_logprob = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        is_stop = jnp.any(token[:, None] == stop[None, :], axis=-1)
        active = ~s["done"]
        keep = active & ~is_stop
        new = dict(s)
        new["tokens"] = s["tokens"].at[:, step].set(jnp.where(keep, token, 0))
        new["logprobs"] = s["logprobs"].at[:, step].set(jnp.where(keep, token_logprob, 0.0))
        if spec.return_probs:
            new["probs"] = s["probs"].at[:, step].set(
                jnp.where(keep[:, None], jnp.exp(log_probs), 0.0))
        new["length"] = s["length"] + keep.astype(jnp.int32)
        new["stopped"] = s["stopped"] | (active & is_stop)
        new["done"] = s["done"] | is_stop
        # Feed the token back. Finished rows keep computing (cheap, batched) but are never recorded.
        next_logits, mutated = model.apply(
            {"params": params, "cache": s["cache"]}, token[:, None],
            positions=(prompt_lengths + step)[:, None], segment_ids=jnp.ones((batch, 1), jnp.int32),
            decode=True, mutable=["cache"])
        new["cache"] = mutated["cache"]
        new["logits"] = next_logits[:, 0]
        new["step"] = step + 1
        return new

    final = jax.lax.while_loop(cond, body, state)
    out = {k: final[k] for k in ("tokens", "logprobs", "length", "stopped")}
    if spec.return_probs:
        out["probs"] = final["probs"]
    return out


def _bucket(n: int, multiple: int = 16) -> int:
    """Round prompt lengths up so that similar batches share one compiled loop."""
    return max(multiple, -(-n // multiple) * multiple)


class Decoder:
    """Generate continuations for token-id prompts with a fixed model and parameters.

    `vocab` (a seqio Vocabulary) is optional: with it, samples carry decoded text and EOS is a
    default stop token.
    """

    def __init__(self, config: ModelConfig, params: Any, vocab: Any = None,
                 batch_size: int = 8, pad_id: int = 0):
        self.config = config
        self.params = params
        self.vocab = vocab
        self.batch_size = batch_size
        self.pad_id = pad_id

    def default_stop_tokens(self) -> tuple[int, ...]:
        eos = getattr(self.vocab, "eos_id", None) if self.vocab is not None else None
        return (int(eos),) if eos is not None and eos >= 0 else ()

    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 64,
                 sampling: SamplingConfig = SamplingConfig(), num_samples: int = 1, seed: int = 0,
                 stop_tokens: Sequence[int] | None = None, return_probs: bool = False,
                 progress: bool = False) -> list[list[Sample]]:
        """For each prompt (a list of token ids), `num_samples` Samples.

        Sample j of prompt i uses key fold_in(fold_in(seed, i), j): reproducible and independent of
        batch size. Empty prompts are refused (there is nothing to condition on; add a BOS).
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty; decoding needs at least one token (e.g. BOS)")
            bad = [t for t in p if not 0 <= int(t) < self.config.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} has token ids outside [0, {self.config.vocab_size}): {bad[:5]}")
        stops = tuple(self.default_stop_tokens() if stop_tokens is None else map(int, stop_tokens))
        spec = _LoopSpec(self.config, sampling, int(max_new_tokens), stops, bool(return_probs))
        rows = [(i, j) for i in range(len(prompts)) for j in range(num_samples)]
        base = jax.random.key(seed)
        results: list[list[Sample]] = [[] for _ in prompts]
        start = time.time()
        # Batches have a fixed row count (a power of two up to batch_size) so shapes recompile rarely.
        batch_size = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
        for b0 in range(0, len(rows), batch_size):
            chunk = rows[b0:b0 + batch_size]
            # Pad the batch with copies of its first row so every batch has the compiled shape.
            padded = chunk + [chunk[0]] * (batch_size - len(chunk))
            row_prompts = [list(prompts[i]) for i, _ in padded]
            tokens, lengths = _left_pad(row_prompts, _bucket(max(map(len, row_prompts))), self.pad_id)
            keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(base, i), j) for i, j in padded])
            out = jax.device_get(_decode_loop(self.params, jnp.asarray(tokens), jnp.asarray(lengths),
                                              keys, spec=spec))
            for r, (i, _) in enumerate(chunk):
                n = int(out["length"][r])
                ids = [int(t) for t in out["tokens"][r, :n]]
                results[i].append(Sample(
                    token_ids=ids,
                    logprobs=[float(x) for x in out["logprobs"][r, :n]],
                    text=self._decode_text(ids),
                    finish_reason="stop" if bool(out["stopped"][r]) else "length",
                    probs=np.asarray(out["probs"][r, :n]) if return_probs else None,
                ))
            if progress:
                done = min(b0 + batch_size, len(rows))
                rate = done / max(time.time() - start, 1e-9)
                eta = (len(rows) - done) / max(rate, 1e-9)
                print(f"decoded {done}/{len(rows)} samples ({rate:.2f} samples/s, ETA {eta:.0f}s)",
                      flush=True)
        return results

    def _decode_text(self, ids: list[int]) -> str | None:
        if self.vocab is None:
            return None
        return self.vocab.decode(ids)

    def generate_text(self, prompts: Sequence[str], **kwargs) -> list[list[Sample]]:
        """Encode text prompts with the vocabulary, then `generate`."""
        if self.vocab is None:
            raise ValueError("generate_text needs a vocabulary")
        return self.generate([list(self.vocab.encode(p)) for p in prompts], **kwargs)


def full_forward_logits(config: ModelConfig, params: Any, tokens: Array) -> Array:
    """Logits of one plain forward pass (reference for tests of the cached path)."""
    return Transformer(config).apply({"params": params}, tokens)
