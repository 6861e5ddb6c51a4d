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
- **2-D fused weights** (one QKV and one gate|up matrix per layer), stored in the layout the CPU dot
  kernel prefers for the compute dtype, so no weight is transposed or copied inside the loop.
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


def out_major(dtype: Any) -> bool:
    """Whether matmul weights are stored [out, in] for this compute dtype.

    Measured on XLA:CPU at decode shapes (8 rows): bf16 dots are up to ~1.7x faster with the
    contraction on the weight's minor axis; fp32 dots are faster [in, out]. Either way the weights are
    stored as 2-D matrices, so XLA never transposes a weight inside the decode loop.
    """
    return jnp.dtype(dtype) == jnp.bfloat16


def cast_weights(weights: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """Decode-ready weights, made once: per layer one fused QKV matrix, the output projection, one
    fused gate|up matrix and the down projection, all 2-D in the compute dtype and in the layout
    `out_major` picks; norm scales in the compute dtype (the model casts them the same way).

    The embedding table stays in its own dtype (the model looks tokens up in fp32 and casts after);
    `head` is the output matrix (the lm_head, or the embedding when tied).
    """
    dtype = jnp.dtype(dtype)
    transpose = out_major(dtype)

    def matrix(w: Array, n_in: int) -> Array:
        m = w.reshape(n_in, -1).astype(dtype)      # [in, out]
        return m.T if transpose else m

    layers = []
    for layer in weights["layers"]:
        attn, mlp = layer["attn"], layer["mlp"]
        d = attn["q_proj"].shape[0]
        qkv = jnp.concatenate([attn[n].reshape(d, -1) for n in ("q_proj", "k_proj", "v_proj")], axis=1)
        gate_up = jnp.concatenate([mlp["gate_proj"], mlp["up_proj"]], axis=1)
        layers.append({
            "attn_norm": layer["attn_norm"]["scale"].astype(dtype),
            "mlp_norm": layer["mlp_norm"]["scale"].astype(dtype),
            "qkv": matrix(qkv, d),
            "o": matrix(attn["o_proj"], attn["o_proj"].shape[0] * attn["o_proj"].shape[1]),
            "gate_up": matrix(gate_up, d),
            "down": matrix(mlp["down_proj"], mlp["down_proj"].shape[0]),
        })
    head = weights["lm_head"] if weights["lm_head"] is not None else weights["embedding"].T
    return {"embedding": weights["embedding"], "final_norm": weights["final_norm"].astype(dtype),
            "head": matrix(head, head.shape[0]), "layers": layers}


def _matmul(x: Array, w: Array) -> Array:
    """x[..., in] times a 2-D weight stored [in, out] or [out, in] (see `out_major`)."""
    if w.dtype == jnp.bfloat16:  # stored [out, in]
        return jnp.einsum("...i,oi->...o", x, w)
    return jnp.einsum("...i,io->...o", x, w)


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
    # Einsum dots rather than broadcast-multiply + reduce: measured at 8 rows x 1,280 slots, 4.0 vs
    # 6.9 ms per layer (the reduce materialises the product); at short caches they are about even.
    scores = jnp.einsum("bkgld,bksd->bkgls", q, k) * (d ** -0.5)
    visible = jnp.arange(slots)[None, None, None, None, :] <= query_pos[:, None, None, :, None]
    scores = jnp.where(visible, scores.astype(jnp.float32), -0.7 * float(jnp.finfo(jnp.float32).max))
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgls,bksd->bkgld", probs, v)
    return out.reshape(b, h, length, d)


def _mlp(x: Array, w: dict[str, Array]) -> Array:
    gate, up = jnp.split(_matmul(x, w["gate_up"]), 2, axis=-1)
    return _matmul(jax.nn.silu(gate) * up, w["down"])


def _qkv(x: Array, w: dict[str, Array], positions: Array, config: Any):
    """q[B, H, L, D], k and v[B, KV_H, L, D] from one fused matmul, RoPE applied to q and k."""
    b, length, _ = x.shape
    h, kvh, hd = config.num_heads, config.num_kv_heads, config.resolved_head_dim
    qkv = _matmul(x, w["qkv"]).reshape(b, length, h + 2 * kvh, hd).transpose(0, 2, 1, 3)
    q, k, v = qkv[:, :h], qkv[:, h:h + kvh], qkv[:, h + kvh:]
    return _rotary(q, positions, config.rope_theta), _rotary(k, positions, config.rope_theta), v


def _attn_out(out: Array, w: dict[str, Array], dtype: Any) -> Array:
    b, h, length, hd = out.shape
    return _matmul(out.astype(dtype).transpose(0, 2, 1, 3).reshape(b, length, h * hd), w["o"])


def _embed(weights: dict[str, Any], tokens: Array, dtype: Any) -> Array:
    return jnp.take(weights["embedding"], tokens, axis=0).astype(dtype)


def _logits(weights: dict[str, Any], x: Array, config: Any, dtype: Any) -> Array:
    """Final norm and output head. The head's dot runs in the compute dtype and is cast to fp32 after."""
    x = _rms_norm(x, weights["final_norm"], config.rms_norm_eps, dtype)
    return _matmul(x, weights["head"]).astype(jnp.float32)


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
        h = _rms_norm(x, w["attn_norm"], config.rms_norm_eps, dtype)
        q, k, v = _qkv(h, w, positions, config)
        k, v = k.astype(cache_dtype), v.astype(cache_dtype)
        kv.append((k, v))
        x = x + _attn_out(_attend(q, k, v, positions), w, dtype)
        x = x + _mlp(_rms_norm(x, w["mlp_norm"], config.rms_norm_eps, dtype), w)
    last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)   # [R, 1, d]
    return kv, _logits(weights, last, config, dtype)[:, 0]


def step(weights: dict[str, Any], cache: list[tuple[Array, Array]], tokens: Array, positions: Array,
         config: Any, dtype: Any, visible: int | None = None) -> tuple[list[tuple[Array, Array]], Array]:
    """One token per row: tokens[B] at positions[B] (= the slot each row writes). Returns the updated
    cache and fp32 logits[B, V]. Each layer writes one slot per row (a scatter, in place inside a loop).

    `visible` (static) limits attention to the first slots of the cache; the caller guarantees every
    position is below it. Reading the cache is most of a step's memory traffic once it is long, so
    attending only as far as the longest live row saves that much.
    """
    batch = tokens.shape[0]
    rows = jnp.arange(batch)
    slots = jnp.minimum(positions, cache[0][0].shape[2] - 1)
    pos = positions[:, None]
    x = _embed(weights, tokens[:, None], dtype)
    new_cache = []
    for w, (ck, cv) in zip(weights["layers"], cache):
        h = _rms_norm(x, w["attn_norm"], config.rms_norm_eps, dtype)
        q, k, v = _qkv(h, w, pos, config)
        ck = ck.at[rows, :, slots, :].set(k[:, :, 0, :].astype(ck.dtype))
        cv = cv.at[rows, :, slots, :].set(v[:, :, 0, :].astype(cv.dtype))
        new_cache.append((ck, cv))
        kv_k, kv_v = (ck, cv) if visible is None else (ck[:, :, :visible], cv[:, :, :visible])
        x = x + _attn_out(_attend(q, kv_k, kv_v, pos), w, dtype)
        x = x + _mlp(_rms_norm(x, w["mlp_norm"], config.rms_norm_eps, dtype), w)
    return new_cache, _logits(weights, x, config, dtype)[:, 0]
