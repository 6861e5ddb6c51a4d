"""A functional forward pass of the decoder for fast KV-cache decoding, over unstacked weights.

`patch_training.model.Transformer` is the one definition of the model; this module re-expresses its
token-mode forward as plain functions for decoding only, because the decode loop wants things the
training-shaped module does not give:

- **unstacked layers**: the scanned checkpoints store every layer's weights stacked on a `layers`
  axis; scanning them inside the decode `while_loop` copies the stacked cache and weights every step.
  `unstack_params` splits them once (host side); the layers then run as an unrolled Python loop.
- **a `[B, KV_H, S, D]` cache** (kv heads before slots), so the per-step attention is two einsums
  with no transposes of the whole cache, and each row has **its own length**: a row can be refilled
  with a new prompt while the others keep decoding (see `evals.decode_engine`).
- **a compute dtype apart from the cache dtype**: bf16 matmuls with fp32 parameters (cast once) and an
  fp32 cache (a bf16 cache would be upcast for the attention dots every step).

Parameter names and shapes are the checkpoint's; `tests/decoding/test_decode_engine.py` checks these
functions against `Transformer.apply` (fp32: equal within rounding).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def unstack_params(params: Any, num_layers: int) -> dict[str, Any]:
    """{'embedding', 'final_norm', 'lm_head' (None when tied), 'layers': [per-layer dicts]}.

    Accepts scanned (`layers` with a leading layer axis) and unscanned (`layers_0`, ...) checkpoints.
    """
    if "layers" in params:
        stacked = params["layers"]
        layers = [jax.tree_util.tree_map(lambda a, i=i: a[i], stacked) for i in range(num_layers)]
    else:
        layers = [params[f"layers_{i}"] for i in range(num_layers)]
    return {"embedding": params["embedding"], "final_norm": params["final_norm"]["scale"],
            "lm_head": params.get("lm_head"), "layers": layers}


def cast_weights(weights: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """The matmul weights in the compute dtype (norm scales too: the model casts them the same way).

    The embedding table stays in its own dtype: the model looks tokens up in fp32 and casts after.
    """
    dtype = jnp.dtype(dtype)
    cast = lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)
    out = dict(weights)
    out["layers"] = [cast(layer) for layer in weights["layers"]]
    out["final_norm"] = weights["final_norm"].astype(dtype)
    out["lm_head"] = None if weights["lm_head"] is None else weights["lm_head"].astype(dtype)
    out["embedding_out"] = weights["embedding"].astype(dtype)  # the tied head's matmul copy
    return out


def _rms_norm(x: Array, scale: Array, eps: float, dtype: Any) -> Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale * normed.astype(dtype)


def _rotary(x: Array, positions: Array, theta: float) -> Array:
    """RoPE ("rotate half") on x[B, H, L, D] at positions[B, L]; angles in fp32 as in the model."""
    head_dim = x.shape[-1]
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(0, half, dtype=jnp.float32) * 2.0 / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq          # [B, L, D/2]
    cos = jnp.cos(angles)[:, None].astype(x.dtype)
    sin = jnp.sin(angles)[:, None].astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attend(q: Array, k: Array, v: Array, query_pos: Array) -> Array:
    """q[B, H, L, D] over k, v[B, KV_H, S, D]; slot s is visible to a query at position p iff s <= p.

    Slots are positions (each row's sequence starts at slot 0), so this is causal attention and it
    hides every slot not yet written for that row. Scores, softmax and the value sum run in the
    cache dtype (fp32 by default).
    """
    b, h, length, d = q.shape
    kvh, slots = k.shape[1], k.shape[2]
    q = q.astype(k.dtype).reshape(b, kvh, h // kvh, length, d)
    scores = jnp.einsum("bkgld,bksd->bkgls", q, k) * (d ** -0.5)
    visible = jnp.arange(slots)[None, None, None, None, :] <= query_pos[:, None, None, :, None]
    scores = jnp.where(visible, scores.astype(jnp.float32), -0.7 * float(jnp.finfo(jnp.float32).max))
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgls,bksd->bkgld", probs, v)
    return out.reshape(b, h, length, d)


def _mlp(x: Array, w: dict[str, Array]) -> Array:
    gate = jnp.einsum("bld,df->blf", x, w["gate_proj"])
    up = jnp.einsum("bld,df->blf", x, w["up_proj"])
    return jnp.einsum("blf,fd->bld", jax.nn.silu(gate) * up, w["down_proj"])


def _qkv(x: Array, w: dict[str, Array], positions: Array, theta: float):
    q = jnp.einsum("bld,dhk->bhlk", x, w["q_proj"])
    k = jnp.einsum("bld,dhk->bhlk", x, w["k_proj"])
    v = jnp.einsum("bld,dhk->bhlk", x, w["v_proj"])
    return _rotary(q, positions, theta), _rotary(k, positions, theta), v


def _embed(weights: dict[str, Any], tokens: Array, dtype: Any) -> Array:
    return jnp.take(weights["embedding"], tokens, axis=0).astype(dtype)


def _logits(weights: dict[str, Any], x: Array, config: Any, dtype: Any) -> Array:
    """Final norm and output head. The head's dot runs in the compute dtype and is cast to fp32 after
    (an fp32-accumulating bf16 dot takes a much slower kernel on CPU)."""
    x = _rms_norm(x, weights["final_norm"], config.rms_norm_eps, dtype)
    if weights["lm_head"] is None:
        logits = jnp.einsum("bld,vd->blv", x, weights["embedding_out"])
    else:
        logits = jnp.einsum("bld,dv->blv", x, weights["lm_head"])
    return logits.astype(jnp.float32)


def prefill(weights: dict[str, Any], tokens: Array, lengths: Array, config: Any, dtype: Any,
            cache_dtype: Any) -> tuple[list[tuple[Array, Array]], Array]:
    """Right-padded prompts tokens[R, L] with true lengths[R] -> (per-layer (k, v) [R, KV_H, L, D] in
    cache_dtype, fp32 logits[R, V] at each row's last prompt token). Padding sits after the real
    tokens, so causality alone keeps it out of them."""
    r, length = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (r, length))
    x = _embed(weights, tokens, dtype)
    kv = []
    for w in weights["layers"]:
        h = _rms_norm(x, w["attn_norm"]["scale"], config.rms_norm_eps, dtype)
        q, k, v = _qkv(h, w["attn"], positions, config.rope_theta)
        k, v = k.astype(cache_dtype), v.astype(cache_dtype)
        kv.append((k, v))
        out = _attend(q, k, v, positions).astype(dtype)
        x = x + jnp.einsum("bhlk,hkd->bld", out, w["attn"]["o_proj"])
        x = x + _mlp(_rms_norm(x, w["mlp_norm"]["scale"], config.rms_norm_eps, dtype), w["mlp"])
    last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)   # [R, 1, d]
    return kv, _logits(weights, last, config, dtype)[:, 0]


def step(weights: dict[str, Any], cache: list[tuple[Array, Array]], tokens: Array, positions: Array,
         config: Any, dtype: Any) -> tuple[list[tuple[Array, Array]], Array]:
    """One token per row: tokens[B] at positions[B] (= the slot each row writes). Returns the updated
    cache and fp32 logits[B, V]. Each layer writes one slot per row (a scatter, in place inside a loop)."""
    batch = tokens.shape[0]
    rows = jnp.arange(batch)
    slots = jnp.minimum(positions, cache[0][0].shape[2] - 1)
    pos = positions[:, None]
    x = _embed(weights, tokens[:, None], dtype)
    new_cache = []
    for w, (ck, cv) in zip(weights["layers"], cache):
        h = _rms_norm(x, w["attn_norm"]["scale"], config.rms_norm_eps, dtype)
        q, k, v = _qkv(h, w["attn"], pos, config.rope_theta)
        ck = ck.at[rows, :, slots, :].set(k[:, :, 0, :].astype(ck.dtype))
        cv = cv.at[rows, :, slots, :].set(v[:, :, 0, :].astype(cv.dtype))
        new_cache.append((ck, cv))
        out = _attend(q, ck, cv, pos).astype(dtype)
        x = x + jnp.einsum("bhlk,hkd->bld", out, w["attn"]["o_proj"])
        x = x + _mlp(_rms_norm(x, w["mlp_norm"]["scale"], config.rms_norm_eps, dtype), w["mlp"])
    return new_cache, _logits(weights, x, config, dtype)[:, 0]
