"""Batched autoregressive decoding with a KV cache: prefill, then one token per step, all under jit.

`Decoder` has two paths. The default, `engine="continuous"`, is `evals.decode_engine`: rows are
refilled with waiting prompts as their completions end, over a functional forward with unstacked
layers, a `[B, KV_H, S, D]` per-row cache and an optional bf16 compute dtype. `engine="static"` is
the model's own decode mode described below, kept as the reference the engine is tested against.
Both give the same samples for the same seed (fp32), whatever the batching.

Static layout: prompts are **left-padded** to a common length P, so every row's last prompt token sits at
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
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evals import decode_mesh
from evals.sampling import SamplingConfig, sample_tokens
from patch_training.model import ModelConfig, Transformer, init_cache

Array = jax.Array


@dataclasses.dataclass
class Sample:
    """One generated continuation. `probs` is [len(token_ids), V] when requested, else None;
    `mean_dist` is its mean over the generated steps ([V], from a running sum on the device) when
    requested and at least one token was generated."""
    token_ids: list[int]
    logprobs: list[float]
    text: str | None = None
    finish_reason: str = "length"   # "stop" when a stop token ended it (the stop token is not included)
    probs: np.ndarray | None = None
    mean_dist: np.ndarray | None = None

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
def _decode_loop(params: Any, prompt: Array, prompt_lengths: Array, row_keys: Array, row_limits: Array, *,
                 spec: _LoopSpec) -> dict[str, Array]:
    """Prefill left-padded prompt[B, P], then generate up to row_limits[b] <= spec.max_new_tokens
    tokens per row; the batch runs until its last row ends."""
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
        new["done"] = s["done"] | is_stop | (new["length"] >= row_limits)
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


# "continuous": evals.decode_engine (rows refilled as they finish; unstacked layers, [B, KV_H, S, D]
# cache, compute dtype apart from the fp32 cache). "static": the model's own decode mode, one batch
# at a time until its longest row ends (the reference the engine is tested against).
ENGINES = ("continuous", "static")
# compute_dtype=None means the model's own `config.dtype` (fp32 for our checkpoints): results equal
# the full forward pass, which the evals' scoring passes and parity tests rely on. "bfloat16" (bf16
# matmuls with fp32 params and an fp32 KV cache) is the fast setting: ~1.4x the fp32 speed on CPU,
# logits within bf16 rounding, so greedy can split where the top two logits nearly tie.
DECODE_DTYPES = ("float32", "bfloat16")


class Decoder:
    """Generate continuations for token-id prompts with a fixed model and parameters.

    `vocab` (a seqio Vocabulary) is optional: with it, samples carry decoded text and EOS is a
    default stop token. `engine` picks the decode path (see ENGINES); `compute_dtype` and
    `cache_dtype` apply to the continuous engine (the static path uses `config.dtype`).
    """

    def __init__(self, config: ModelConfig, params: Any, vocab: Any = None,
                 batch_size: int = 8, pad_id: int = 0, *, engine: str = "continuous",
                 compute_dtype: str | None = None, cache_dtype: str = "float32",
                 chunk_steps: int = 256, share_prefill: bool = True, devices: int | str = "all"):
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
        if engine == "static" and (compute_dtype is not None or cache_dtype != "float32"):
            # The static path decodes in the model's own dtype; say so rather than ignore the option.
            raise ValueError("compute_dtype/cache_dtype apply to engine='continuous' only; the static "
                             f"engine decodes in the model's dtype ({config.dtype})")
        compute_dtype = compute_dtype or (config.dtype if config.dtype in DECODE_DTYPES else "float32")
        for name, value in (("compute_dtype", compute_dtype), ("cache_dtype", cache_dtype)):
            if value not in DECODE_DTYPES:
                raise ValueError(f"{name}={value!r}: expected float32 or bfloat16")
        self.config = config
        self.params = params
        self.vocab = vocab
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.engine = engine
        self.compute_dtype = compute_dtype
        self.cache_dtype = cache_dtype
        self.chunk_steps = chunk_steps
        # Samples of one prompt prefill it once (continuous engine); off = one prefill per sample,
        # the reference the shared path is tested against.
        self.share_prefill = share_prefill
        self.last_stats: dict[str, int] = {}   # the continuous engine's prefill/copy/chunk counts
        self._weights: Any = None   # unstacked + cast once, on first use of the engine
        # The continuous engine's rows split over these local devices (None: one device, unsharded). The
        # static path (a reference kept for tests) always decodes on one device.
        self.mesh = decode_mesh.local_mesh(devices) if engine == "continuous" else None

    def default_stop_tokens(self) -> tuple[int, ...]:
        eos = getattr(self.vocab, "eos_id", None) if self.vocab is not None else None
        return (int(eos),) if eos is not None and eos >= 0 else ()

    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int | Sequence[int] = 64,
                 sampling: SamplingConfig = SamplingConfig(), num_samples: int = 1, seed: int = 0,
                 stop_tokens: Sequence[int] | None = None, return_probs: bool = False,
                 return_mean_dist: bool = False, seeds: Sequence[int] | None = None,
                 progress: bool | Callable[[int, int, int], None] = False,
                 mean_includes_stop: bool = False) -> list[list[Sample]]:
        """For each prompt (a list of token ids), `num_samples` Samples.

        Sample j of prompt i uses key fold_in(fold_in(seed, i), j): reproducible and independent of
        batch size and engine. With `seeds` (one per prompt) it is fold_in(fold_in(seeds[i], 0), j),
        the key prompt i would get alone in a call with seed=seeds[i], so prompts seeded by their own
        identity can share one call. `max_new_tokens` is one limit for all or one per prompt. Empty
        prompts are refused (there is nothing to condition on; add a BOS). `return_probs` keeps every
        step's [V] softmax; `return_mean_dist` only their mean (bounded memory), over the kept tokens' steps
        or, with `mean_includes_stop`, over every step including the one that sampled a stop token (the
        continuous engine only).
        """
        if mean_includes_stop and self.engine != "continuous":
            raise ValueError("mean_includes_stop needs the continuous engine (the static loop keeps no stop step)")
        limits = ([int(max_new_tokens)] * len(prompts) if np.ndim(max_new_tokens) == 0
                  else [int(n) for n in max_new_tokens])
        if len(limits) != len(prompts):
            raise ValueError(f"{len(limits)} max_new_tokens values for {len(prompts)} prompts")
        if limits and min(limits) < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {min(limits)}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty; decoding needs at least one token (e.g. BOS)")
            bad = [t for t in p if not 0 <= int(t) < self.config.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} has token ids outside [0, {self.config.vocab_size}): {bad[:5]}")
        if not prompts:
            return []
        stops = tuple(self.default_stop_tokens() if stop_tokens is None else map(int, stop_tokens))
        rows = [(i, j) for i in range(len(prompts)) for j in range(num_samples)]
        if seeds is not None:
            if len(seeds) != len(prompts):
                raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
            bases = [jax.random.fold_in(jax.random.key(int(s)), 0) for s in seeds]
        else:
            base = jax.random.key(seed)
            bases = [jax.random.fold_in(base, i) for i in range(len(prompts))]
        keys = [jax.random.fold_in(bases[i], j) for i, j in rows]
        if self.engine == "continuous":
            return self._generate_continuous(prompts, rows, keys, limits, sampling, stops, return_probs,
                                             return_mean_dist, progress, mean_includes_stop)
        results = self._generate_static(prompts, rows, keys, limits, sampling, stops,
                                        return_probs or return_mean_dist, progress)
        for row in results:
            for s in row:
                if return_mean_dist and s.token_ids:
                    s.mean_dist = s.probs.mean(axis=0).astype(np.float32)
                if not return_probs:
                    s.probs = None
        return results

    def _sample(self, ids: list[int], logprobs: list[float], stopped: bool,
                probs: np.ndarray | None, mean_dist: np.ndarray | None = None) -> Sample:
        return Sample(token_ids=ids, logprobs=logprobs, text=self._decode_text(ids),
                      finish_reason="stop" if stopped else "length", probs=probs, mean_dist=mean_dist)

    def engine_weights(self) -> Any:
        """The continuous engine's weights (layers unstacked, matmuls cast), made once and shared."""
        from evals import decode_engine

        if self._weights is None:
            self._weights = decode_mesh.replicate(
                decode_engine.prepare_weights(self.params, self.config, self.compute_dtype), self.mesh)
        return self._weights

    def _generate_continuous(self, prompts, rows, keys, limits, sampling, stops, return_probs,
                             return_mean_dist, progress, mean_includes_stop=False) -> list[list[Sample]]:
        from evals import decode_engine

        self.engine_weights()
        row_limits = [limits[i] for i, _ in rows]
        longest = max(len(prompts[i]) for i, _ in rows)
        # Cache slots: the longest bucketed prompt plus the longest completion, rounded to 64 so
        # calls with similar sizes share compiled loops.
        cache_len = -(-(decode_engine.bucket_length(longest) + max(row_limits)) // 64) * 64
        spec = decode_engine.EngineSpec(
            config=self.config, sampling=sampling,
            rows=decode_mesh.round_rows(min(self.batch_size, 1 << (len(rows) - 1).bit_length()), self.mesh),
            cache_len=cache_len, max_new_tokens=max(row_limits), stop_tokens=stops,
            return_probs=bool(return_probs), compute_dtype=self.compute_dtype,
            cache_dtype=self.cache_dtype, return_mean=bool(return_mean_dist),
            mean_includes_stop=bool(return_mean_dist and mean_includes_stop), mesh=self.mesh)
        self.last_stats = {}
        finished = decode_engine.run_engine(
            self._weights, spec, [prompts[i] for i, _ in rows], keys, row_limits,
            chunk_steps=self.chunk_steps, share_prefill=self.share_prefill, stats=self.last_stats,
            progress=(progress if callable(progress) else decode_engine.make_progress_printer()) if progress else None)
        results: list[list[Sample]] = [[] for _ in prompts]
        for (i, _), fin in zip(rows, finished):
            results[i].append(self._sample(fin.token_ids, fin.logprobs, fin.stopped, fin.probs,
                                           fin.mean_dist))
        return results

    def _generate_static(self, prompts, rows, keys, limits, sampling, stops, return_probs,
                         progress) -> list[list[Sample]]:
        results: list[list[Sample]] = [[] for _ in prompts]
        start = time.time()
        # Batches have a fixed row count (a power of two up to batch_size) so shapes recompile rarely.
        batch_size = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
        for b0 in range(0, len(rows), batch_size):
            chunk = list(range(b0, min(b0 + batch_size, len(rows))))
            # Pad the batch with copies of its first row so every batch has the compiled shape.
            padded = chunk + [chunk[0]] * (batch_size - len(chunk))
            row_prompts = [list(prompts[rows[r][0]]) for r in padded]
            tokens, lengths = _left_pad(row_prompts, _bucket(max(map(len, row_prompts))), self.pad_id)
            # One compiled loop per call (widest limit); the batch runs until its last row ends.
            spec = _LoopSpec(self.config, sampling, max(limits), stops, bool(return_probs))
            row_limits = np.asarray([limits[rows[r][0]] for r in padded], np.int32)
            out = jax.device_get(_decode_loop(self.params, jnp.asarray(tokens), jnp.asarray(lengths),
                                              jnp.stack([keys[r] for r in padded]),
                                              jnp.asarray(row_limits), spec=spec))
            for k, r in enumerate(chunk):
                i = rows[r][0]
                n = int(out["length"][k])
                stopped = bool(out["stopped"][k])
                ids = [int(t) for t in out["tokens"][k, :n]]
                results[i].append(self._sample(
                    ids, [float(x) for x in out["logprobs"][k, :n]], stopped,
                    np.asarray(out["probs"][k, :n]) if return_probs else None))
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
