"""Pure loss functions: token-level next-token cross-entropy and the patch-level loss.

Patch loss (patch-level training, arXiv 2407.12665): the model sees T patches, each the mean of K
token embeddings, and emits one distribution per patch. The distribution at patch i must predict
every one of the K tokens of patch i+1, so the loss is the mean over (batch, i = 0..T-2, k) of
-log p(token[(i+1)K + k] | patches <= i). The log-partition is computed once per patch and shared by
its K targets. With K = 1 this is exactly next-token cross-entropy (same arithmetic, same reduction).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from patch_training.errors import UserError

Array = jax.Array


def _token_nll(logits: Array, targets: Array) -> Array:
    """-log softmax(logits)[target] for logits[..., V] and integer targets[..., n].

    Several targets may share one row of logits (the last axis of `targets`), so the logsumexp
    is computed once per row.
    """
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    picked = jnp.take_along_axis(logits, targets.astype(jnp.int32), axis=-1)
    return lse - picked


def _weighted_mean(nll: Array, weights: Array) -> tuple[Array, dict[str, Array]]:
    weights = weights.astype(jnp.float32)
    loss_sum = jnp.sum(nll * weights)
    weight_sum = jnp.sum(weights)
    # A batch of pure padding gives 0, not NaN.
    loss = loss_sum / jnp.maximum(weight_sum, 1e-8)
    return loss, {"loss_sum": loss_sum, "weight_sum": weight_sum}


def next_token_loss(logits: Array, targets: Array,
                    weights: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """Weighted mean cross-entropy of logits[B, L, V] against already-aligned targets[B, L].

    Returns (loss_mean, {"loss_sum", "weight_sum"}); `weights` (e.g. seqio's
    `decoder_loss_weights`) default to all ones.
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree on [B, L]")
    if weights is None:
        weights = jnp.ones(targets.shape, jnp.float32)
    nll = _token_nll(logits, targets[..., None])[..., 0]
    return _weighted_mean(nll, weights)


def patch_loss(logits: Array, tokens: Array, patch_size: int,
               weights: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """Patch-level loss for logits[B, T, V] from a model fed tokens[B, K·T] in patch mode.

    `weights[B, K·T]` weight each *target* token (e.g. zero for padding); default all ones. The
    first patch is never a target and the last patch's logits predict nothing.
    """
    k = int(patch_size)
    batch, num_tokens = tokens.shape
    if k < 1:
        raise UserError(f"patch_size must be >= 1, got {k}")
    if num_tokens % k:
        raise UserError(f"patch_size K={k} does not divide the sequence length {num_tokens}")
    t = num_tokens // k
    if logits.shape[:2] != (batch, t):
        raise ValueError(f"logits {logits.shape[:2]} do not match tokens {tokens.shape} "
                         f"at K={k} (expected [{batch}, {t}, V])")
    if t < 2:
        raise UserError(f"patch loss needs at least 2 patches, got {t} (length {num_tokens}, K={k})")
    if weights is None:
        weights = jnp.ones(tokens.shape, jnp.float32)
    targets = tokens[:, k:].reshape(batch, t - 1, k)
    nll = _token_nll(logits[:, :-1], targets).reshape(batch, (t - 1) * k)
    return _weighted_mean(nll, weights[:, k:])
