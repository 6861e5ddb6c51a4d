"""Batched autoregressive decoding with a KV cache: `Decoder`, the one entry the evals, the CLI and the
server's model use.

It drives `evals.decode_engine` (continuous batching: rows are refilled with waiting prompts as their
completions end) over the model's decode mode, `patch_training.model_decode` (unstacked layers, fused
weights, a `[B, KV_H, S, D]` per-row cache, an optional bf16 compute dtype). In fp32 the samples'
distributions equal the training forward's (`Transformer.apply`) within rounding, whatever the batching.

Per step we record the chosen token, its log-probability under the model's raw distribution
(softmax of the logits at temperature 1, before any top-k/top-p filtering) and, on request, that
whole probability vector or only its running mean (what the DynamicQA eval averages).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from evals import decode_engine, decode_mesh
from evals.sampling import SamplingConfig
from patch_training import model_decode
from patch_training.model import ModelConfig


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


# compute_dtype=None means the model's own `config.dtype` (fp32 for our checkpoints): results equal
# the full forward pass, which the evals' scoring passes and parity tests rely on. "bfloat16" (bf16
# matmuls with fp32 params and an fp32 KV cache) is the fast setting: ~1.4x the fp32 speed on CPU,
# logits within bf16 rounding, so greedy can split where the top two logits nearly tie.
DECODE_DTYPES = ("float32", "bfloat16")


class Decoder:
    """Generate continuations for token-id prompts with a fixed model and parameters.

    `vocab` (a seqio Vocabulary) is optional: with it, samples carry decoded text and EOS is a
    default stop token. `compute_dtype` is the matmul dtype (default: the model's), `cache_dtype` the
    KV cache's; `batch_size` is the number of engine rows.
    """

    def __init__(self, config: ModelConfig, params: Any, vocab: Any = None,
                 batch_size: int = 8, *, compute_dtype: str | None = None, cache_dtype: str = "float32",
                 chunk_steps: int = 256, share_prefill: bool = True, devices: int | str = "all"):
        compute_dtype = compute_dtype or (config.dtype if config.dtype in DECODE_DTYPES else "float32")
        for name, value in (("compute_dtype", compute_dtype), ("cache_dtype", cache_dtype)):
            if value not in DECODE_DTYPES:
                raise ValueError(f"{name}={value!r}: expected float32 or bfloat16")
        self.config = config
        self.params = params
        self.vocab = vocab
        self.batch_size = batch_size
        self.compute_dtype = compute_dtype
        self.cache_dtype = cache_dtype
        self.chunk_steps = chunk_steps
        # Samples of one prompt prefill it once; off = one prefill per sample, the reference the shared
        # path is tested against.
        self.share_prefill = share_prefill
        self.last_stats: dict[str, int] = {}   # the engine's prefill/copy/chunk counts
        self._weights: Any = None   # the decode mode's weights, made once on first use
        # The engine's rows (and scoring's) split over these local devices (None: one device, unsharded).
        self.mesh = decode_mesh.local_mesh(devices)

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
        batch size. With `seeds` (one per prompt) it is fold_in(fold_in(seeds[i], 0), j),
        the key prompt i would get alone in a call with seed=seeds[i], so prompts seeded by their own
        identity can share one call. `max_new_tokens` is one limit for all or one per prompt. Empty
        prompts are refused (there is nothing to condition on; add a BOS). `return_probs` keeps every
        step's [V] softmax; `return_mean_dist` only their mean (bounded memory), over the kept tokens' steps
        or, with `mean_includes_stop`, over every step including the one that sampled a stop token.
        """
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
        return self._generate(prompts, rows, keys, limits, sampling, stops, return_probs, return_mean_dist,
                              progress, mean_includes_stop)

    def _sample(self, ids: list[int], logprobs: list[float], stopped: bool,
                probs: np.ndarray | None, mean_dist: np.ndarray | None = None) -> Sample:
        return Sample(token_ids=ids, logprobs=logprobs, text=self._decode_text(ids),
                      finish_reason="stop" if stopped else "length", probs=probs, mean_dist=mean_dist)

    def engine_weights(self) -> Any:
        """The decode mode's weights (`model_decode.decode_weights`: layers unstacked, matmuls fused and
        cast), made once and shared by the engine and the scoring pass, replicated over the mesh."""
        if self._weights is None:
            self._weights = decode_mesh.replicate(
                model_decode.decode_weights(self.params, self.config, self.compute_dtype), self.mesh)
        return self._weights

    def _generate(self, prompts, rows, keys, limits, sampling, stops, return_probs, return_mean_dist, progress,
                  mean_includes_stop) -> list[list[Sample]]:
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

    def _decode_text(self, ids: list[int]) -> str | None:
        if self.vocab is None:
            return None
        return self.vocab.decode(ids)

    def generate_text(self, prompts: Sequence[str], **kwargs) -> list[list[Sample]]:
        """Encode text prompts with the vocabulary, then `generate`."""
        if self.vocab is None:
            raise ValueError("generate_text needs a vocabulary")
        return self.generate([list(self.vocab.encode(p)) for p in prompts], **kwargs)
