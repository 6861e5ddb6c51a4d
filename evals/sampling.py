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


def sample_tokens_per_row(logits: Array, keys: Array, temperature: Array, top_k: Array, top_p: Array) -> Array:
    """`sample_tokens` with each row's own settings: temperature[B] (0 = greedy), top_k[B] (0 = off),
    top_p[B] (1 = off). A row gets the token `sample_tokens` would give it under a SamplingConfig of its
    own values, bit for bit, so one batch can mix requests without changing any of their samples. The
    sort the filters need and the categorical draw only run when some row asks for them."""
    vocab = logits.shape[-1]
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    sampled = temperature > 0
    scaled = logits.astype(jnp.float32) / jnp.where(sampled, temperature, 1.0)[:, None]
    use_k = sampled & (top_k > 0) & (top_k < vocab)
    use_p = sampled & (top_p < 1.0)

    def filtered(x: Array) -> Array:
        # One descending sort serves both filters: the top-k survivors (ties at the k-th value kept) are a
        # prefix of it, so their own sorted order is that prefix with the rest at NEG_INF.
        desc = jnp.sort(x, axis=-1)[..., ::-1]
        kth = jnp.take_along_axis(desc, jnp.clip(top_k - 1, 0, vocab - 1)[:, None], axis=-1)
        x = jnp.where(use_k[:, None] & (x < kth), NEG_INF, x)
        desc = jnp.where(use_k[:, None] & (desc < kth), NEG_INF, desc)
        probs = jax.nn.softmax(desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep = mass_before < top_p[:, None]
        threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
        return jnp.where(use_p[:, None] & (x < threshold), NEG_INF, x)

    scaled = jax.lax.cond(jnp.any(use_k | use_p), filtered, lambda x: x, scaled)

    def draw(x: Array) -> Array:
        return jax.vmap(lambda key, row: jax.random.categorical(key, row))(keys, x).astype(jnp.int32)

    drawn = jax.lax.cond(jnp.any(sampled), draw, lambda x: greedy, scaled)
    return jnp.where(sampled, drawn, greedy)
