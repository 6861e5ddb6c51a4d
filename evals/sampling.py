"""Next-token choice from logits: greedy, or temperature with optional top-k / top-p filtering.

Pure functions of (logits, key), usable inside `jax.jit` / `lax.while_loop`. Each row gets its own
key, so a row's sample never depends on which other rows share its batch.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array

NEG_INF = -1e30


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens. temperature == 0 means greedy (top_k / top_p are then ignored).

    top_k == 0 and top_p == 1.0 disable those filters.
    """
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def filter_top_k(logits: Array, k: int) -> Array:
    """Keep the k largest logits of each row (ties at the k-th value are kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)


def filter_top_p(logits: Array, p: float) -> Array:
    """Keep the smallest set of most likely tokens whose probability mass reaches p (nucleus)."""
    if p >= 1.0:
        return logits
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # A token stays if the mass of strictly more likely tokens is still below p; the top one always does.
    keep = mass_before < p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits < threshold, NEG_INF, logits)


def sample_tokens(logits: Array, keys: Array, config: SamplingConfig) -> Array:
    """One token id per row of logits[B, V]; `keys[B]` are per-row PRNG keys."""
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / config.temperature
    scaled = filter_top_p(filter_top_k(scaled, config.top_k), config.top_p)
    return jax.vmap(lambda key, row: jax.random.categorical(key, row))(keys, scaled).astype(jnp.int32)
