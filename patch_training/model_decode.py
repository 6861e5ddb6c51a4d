"""The decoder's decode mode: `model.Transformer`'s layers over decode-ready weights and a per-row KV cache.

One model, two layouts. Training runs the Linen `Transformer` (stacked layers, parameters as declared).
Decoding, and scoring so that a sample and its score come from the same code, run this mode: the same
layer functions from `patch_training.layers` (`rms_norm`, `rotary_tables` + `apply_rotary`, `attend`
through `attend_cache`, `swiglu`) over the same parameters, laid out for the decode loop:

- **unstacked layers**: scanned checkpoints store every layer's weights stacked on a `layers` axis;
  scanning them inside the decode `while_loop` copies the stacked cache and weights every step.
  `decode_weights` splits them once; the layers then run as an unrolled Python loop.
- **a `[B, KV_H, S, D]` cache** (kv heads before slots), so the per-step attention is two einsums
  with no transposes of the whole cache, and each row has **its own length**: a row can be refilled
  with a new prompt while the others keep decoding (see `evals.decode_engine`).
- **2-D fused weights** (one QKV and one gate|up matrix per layer), stored in the layout the CPU dot
  kernel prefers for the compute dtype (`layers.out_major`), so no weight is transposed or copied
  inside the loop.
- **a compute dtype apart from the cache dtype**: bf16 matmuls with fp32 parameters (cast once) and an
  fp32 cache (a bf16 cache would be upcast for the attention dots every step).

Three entry points over `decode_weights(params, config, dtype)`: `prefill` (prompts into cache rows,
the logits at each prompt's last token), `step` (one token per row against the cache) and
`score_logits` (teacher-forced logits at every position, the prefill's forward). In fp32 they equal
`Transformer.apply` within rounding (`tests/decoding/test_decoding_cache.py`).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from patch_training.layers import apply_rotary, attend_cache, matmul, out_major, rms_norm, rotary_tables, swiglu

Array = jax.Array
KVCache = list[tuple[Array, Array]]   # per layer (keys, values), each [B, KV_H, S, D]


def _unstack(params: Any, num_layers: int) -> dict[str, Any]:
    """{'embedding', 'final_norm', 'lm_head' (None when tied), 'layers': [per-layer dicts]} from a scanned
    (`layers` with a leading layer axis) or unscanned (`layers_0`, ...) params tree."""
    if "layers" in params:
        stacked = params["layers"]
        layers = [jax.tree_util.tree_map(lambda a, i=i: a[i], stacked) for i in range(num_layers)]
    else:
        layers = [params[f"layers_{i}"] for i in range(num_layers)]
    return {"embedding": params["embedding"], "final_norm": params["final_norm"]["scale"],
            "lm_head": params.get("lm_head"), "layers": layers}


@functools.partial(jax.jit, static_argnames=("dtype",))
def _fuse(weights: dict[str, Any], *, dtype: str) -> dict[str, Any]:
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


def decode_weights(params: Any, config: Any, dtype: Any) -> dict[str, Any]:
    """The decode mode's weights, made once from a checkpoint's params (scanned or not): layers
    unstacked; per layer one fused QKV matrix, the output projection, one fused gate|up matrix and the
    down projection, all 2-D in the compute dtype `dtype` and the layout `out_major` picks; norm scales
    in the compute dtype (the Linen modules cast them the same way at use). The embedding table stays
    in its own dtype (the model looks tokens up, then casts); `head` is the output matrix (the lm_head,
    or the embedding when tied)."""
    return _fuse(_unstack(params, config.num_layers), dtype=jnp.dtype(dtype).name)


def _embed(weights: dict[str, Any], tokens: Array, dtype: Any) -> Array:
    return jnp.take(weights["embedding"], tokens, axis=0).astype(dtype)


def _qkv(x: Array, w: dict[str, Array], rope: tuple[Array, Array], config: Any):
    """q[B, H, L, D], k and v[B, KV_H, L, D] from one fused matmul, RoPE applied to q and k."""
    b, length, _ = x.shape
    h, kvh, hd = config.num_heads, config.num_kv_heads, config.resolved_head_dim
    qkv = matmul(x, w["qkv"]).reshape(b, length, h + 2 * kvh, hd).transpose(0, 2, 1, 3)
    q, k, v = qkv[:, :h], qkv[:, h:h + kvh], qkv[:, h + kvh:]
    return apply_rotary(q, rope), apply_rotary(k, rope), v


def _rope(positions: Array, config: Any, dtype: Any) -> tuple[Array, Array]:
    """Rotary tables for the [B, H, L, D] layout, shared by every layer of one call."""
    return rotary_tables(positions, config.resolved_head_dim, config.rope_theta, dtype, heads_axis=1,
                         barrier=False)


def _attn_out(out: Array, w: dict[str, Array], dtype: Any) -> Array:
    b, h, length, hd = out.shape
    return matmul(out.astype(dtype).transpose(0, 2, 1, 3).reshape(b, length, h * hd), w["o"])


def _mlp_block(x: Array, w: dict[str, Array], config: Any, dtype: Any) -> Array:
    return x + swiglu(rms_norm(x, w["mlp_norm"], config.rms_norm_eps, dtype), w, dtype)


def _logits(weights: dict[str, Any], x: Array, config: Any, dtype: Any) -> Array:
    """Final norm and output head. The head's dot runs in the compute dtype and is cast to fp32 after."""
    x = rms_norm(x, weights["final_norm"], config.rms_norm_eps, dtype)
    return matmul(x, weights["head"]).astype(jnp.float32)


def _forward(weights: dict[str, Any], tokens: Array, config: Any, dtype: Any,
             cache_dtype: Any) -> tuple[KVCache, Array]:
    """Rows tokens[R, L] from position 0 -> (per-layer (k, v) [R, KV_H, L, D] in cache_dtype, the final
    hidden states [R, L, d]). Attention reads the keys and values as the cache holds them."""
    r, length = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (r, length))
    dtype = jnp.dtype(dtype)
    rope = _rope(positions, config, dtype)
    x = _embed(weights, tokens, dtype)
    kv = []
    for w in weights["layers"]:
        q, k, v = _qkv(rms_norm(x, w["attn_norm"], config.rms_norm_eps, dtype), w, rope, config)
        k, v = k.astype(cache_dtype), v.astype(cache_dtype)
        kv.append((k, v))
        x = x + _attn_out(attend_cache(q, k, v, positions), w, dtype)
        x = _mlp_block(x, w, config, dtype)
    return kv, x


def prefill(weights: dict[str, Any], tokens: Array, lengths: Array, config: Any, dtype: Any,
            cache_dtype: Any) -> tuple[KVCache, Array]:
    """Right-padded prompts tokens[R, L] with true lengths[R] -> (per-layer (k, v) [R, KV_H, L, D] in
    cache_dtype, fp32 logits[R, V] at each row's last prompt token). Padding sits after the real
    tokens, so causality alone keeps it out of them."""
    kv, x = _forward(weights, tokens, config, dtype, cache_dtype)
    last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)   # [R, 1, d]
    return kv, _logits(weights, last, config, dtype)[:, 0]


def score_logits(weights: dict[str, Any], tokens: Array, config: Any, dtype: Any, cache_dtype: Any) -> Array:
    """Teacher-forced fp32 logits[R, L, V] of rows tokens[R, L] (right-padded: a real position never
    sees the padding after it): the prefill's forward, every position's logits kept."""
    _, x = _forward(weights, tokens, config, dtype, cache_dtype)
    return _logits(weights, x, config, dtype)


def step(weights: dict[str, Any], cache: KVCache, tokens: Array, positions: Array, config: Any, dtype: Any,
         visible: int | None = None) -> tuple[KVCache, Array]:
    """One token per row: tokens[B] at positions[B] (= the slot each row writes). Returns the updated
    cache and fp32 logits[B, V]. Each layer writes one slot per row (a scatter, in place inside a loop).

    `visible` (static) limits attention to the first slots of the cache; the caller guarantees every
    position is below it. Reading the cache is most of a step's memory traffic once it is long, so
    attending only as far as the longest live row saves that much.
    """
    batch = tokens.shape[0]
    dtype = jnp.dtype(dtype)
    rows = jnp.arange(batch)
    slots = jnp.minimum(positions, cache[0][0].shape[2] - 1)
    pos = positions[:, None]
    rope = _rope(pos, config, dtype)
    x = _embed(weights, tokens[:, None], dtype)
    new_cache = []
    for w, (ck, cv) in zip(weights["layers"], cache):
        q, k, v = _qkv(rms_norm(x, w["attn_norm"], config.rms_norm_eps, dtype), w, rope, config)
        ck = ck.at[rows, :, slots, :].set(k[:, :, 0, :].astype(ck.dtype))
        cv = cv.at[rows, :, slots, :].set(v[:, :, 0, :].astype(cv.dtype))
        new_cache.append((ck, cv))
        kv_k, kv_v = (ck, cv) if visible is None else (ck[:, :, :visible], cv[:, :, :visible])
        x = x + _attn_out(attend_cache(q, kv_k, kv_v, pos), w, dtype)
        x = _mlp_block(x, w, config, dtype)
    return new_cache, _logits(weights, x, config, dtype)[:, 0]
