"""Building blocks of the LLaMA-style decoder: RMSNorm, rotary embeddings, GQA attention, SwiGLU MLP.

The math of each block is written once, as a plain function (`rms_norm`, `rotary_tables` +
`apply_rotary`, `attend`, `swiglu`), and serves both layouts of the model: the Linen modules below
(training, scoring's reference, checkpoints: they declare the parameters and call these functions)
and the decode mode in `patch_training.model_decode` (unstacked layers, fused 2-D weights, a per-row
KV cache), which calls the same functions on decode-ready weights.

Every parameter is created through `nn.with_logical_partitioning`, and key activations pass through
`nn.with_logical_constraint`, so `patch_training.partitioning.LOGICAL_AXIS_RULES` alone decides how
they land on a mesh. Parameters are stored in `config.param_dtype` (fp32) and cast to the compute
dtype `config.dtype` at use; norms, softmax and rotary angles are computed in fp32.

Tensor layouts follow the HF LLaMA conventions where it matters for weight import (rotary embedding
by "rotate half", not interleaved), so HF checkpoints map onto these parameters by reshape only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # avoid a cycle: model.py imports this module
    from patch_training.model import ModelConfig

Array = jax.Array

# Large finite negative rather than -inf: rows of a bias that are fully masked stay finite.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def _dtype(name: str | Any) -> jnp.dtype:
    return jnp.dtype(name)


def partitioned_param(module: nn.Module, name: str, init, shape: tuple[int, ...], axes: tuple[str, ...],
                      dtype) -> Array:
    """A parameter annotated with its logical axes (the partitioning rules map them to the mesh)."""
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def rms_norm(x: Array, scale: Array, eps: float, dtype) -> Array:
    """Root-mean-square norm over the last axis with statistics in fp32, times `scale` (cast to `dtype`).

    HF casts the normalised activations back to the activation dtype before the scale multiplies them;
    keeping that order is what gives parity in bf16.
    """
    dtype = _dtype(dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale.astype(dtype) * normed.astype(dtype)


class RMSNorm(nn.Module):
    """`rms_norm` with a learned scale."""
    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = partitioned_param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",),
                       _dtype(self.param_dtype))
        return rms_norm(x, scale, self.eps, self.dtype)


def rotary_tables(positions: Array, head_dim: int, theta: float, dtype, *, heads_axis: int = 2,
                  barrier: bool = True) -> tuple[Array, Array]:
    """(cos, sin) of the RoPE angles at integer positions[B, L], in `dtype`, with a length-1 heads axis
    inserted at `heads_axis`: [B, L, 1, head_dim/2] for activations laid out [B, L, H, D] (training),
    [B, 1, L, head_dim/2] with heads_axis=1 for [B, H, L, D] (the decode mode).

    The training forward computes them once per pass and hands them to every layer: computed inside
    each layer, XLA fuses the sine and cosine into every consumer (once per head, in the forward, the
    rematerialised forward and the backward), which cost about 6% of a bf16 CPU training step. The
    `barrier` makes XLA write the tables out once; without it XLA fuses the sine and cosine into each
    consumer again. A decode step (one position per row, no backward) goes without it.
    """
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(0, half, dtype=jnp.float32) * 2.0 / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2], fp32
    tables = (jnp.expand_dims(jnp.cos(angles), heads_axis).astype(dtype),
              jnp.expand_dims(jnp.sin(angles), heads_axis).astype(dtype))
    return jax.lax.optimization_barrier(tables) if barrier else tables


def apply_rotary(x: Array, rope: tuple[Array, Array]) -> Array:
    """Apply RoPE ("rotate half" layout) to x[..., D] with `rotary_tables` (cos, sin) laid out to match."""
    cos, sin = rope
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attend(q: Array, k: Array, v: Array, allowed: Array, score_scale: float | None = None) -> Array:
    """Softmax attention of heads-major operands: q[B, KV_H, G, L, D] over k, v[B, KV_H, S, D] ->
    [B, KV_H, G, L, D] (query head h = kv_head * G + g, as in jax.nn.dot_product_attention).

    Both dots run in the operands' dtype and the softmax in fp32 over the keys where `allowed`
    (boolean, broadcast against the [B, KV_H, G, L, S] scores); the probabilities are cast back to v's
    dtype before the second dot. The 1/sqrt(D) scale is the caller's: training folds it into q (in
    the compute dtype, before the dot); the decode mode passes `score_scale` to scale the scores,
    which it computes in the cache's dtype.
    """
    scores = jnp.einsum("bkgld,bksd->bkgls", q, k)
    if score_scale is not None:
        scores = scores * score_scale
    scores = jnp.where(allowed, scores.astype(jnp.float32), _MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgls,bksd->bkgld", probs, v)


# Causal self-attention (training, no KV cache) splits the queries into blocks of this many rows;
# block i scores only the keys up to its own last row, so most of the masked half of the [L, S]
# scores is never computed, and each block's softmax works on a cache-sized slice.
CAUSAL_QUERY_BLOCK = 128


def einsum_attention(q: Array, k: Array, v: Array, mask: Array | None, causal: bool = False) -> Array:
    """GQA attention through `attend`: both dots in the inputs' dtype and the softmax in fp32.

    q[B, L, H, D], k/v[B, S, KV_H, D]; `mask` [B, 1, L, S] (True = may attend) or None for plain
    causal attention (L == S). `causal=True` promises that the mask allows no key after the query's
    own position (self-attention over the same L positions, as in training); the queries are then
    split into blocks of CAUSAL_QUERY_BLOCK rows that each score only the keys up to their last row.
    The softmax of a row is over the same allowed keys either way (the skipped keys are masked).

    Why not `jax.nn.dot_product_attention` on CPU: in bf16 it asks XLA for bf16-in/fp32-out dots and
    keeps fp32 probabilities for the backward pass; XLA:CPU then runs both dots as slow fp32 dots.
    Here the scores come out in the compute dtype, are upcast for a fp32 softmax, and the
    probabilities are cast back before the second dot (PyTorch autocast does the same). In fp32 it
    computes what the XLA implementation does. The operands are laid out heads-major
    ([B, KV_H, G, L, D] and [B, KV_H, S, D]) so that both dots and their gradients are plain batched
    matmuls: in the [B, L, H, D] layout XLA:CPU transposes every [L, S] score tensor for the backward.
    """
    b, length, h, hd = q.shape
    keys_len, kvh = k.shape[1], k.shape[2]
    groups = h // kvh
    qh = (q * jnp.asarray(hd ** -0.5, q.dtype)).reshape(b, length, kvh, groups, hd).transpose(0, 2, 3, 1, 4)
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    block = CAUSAL_QUERY_BLOCK
    blocked = causal and length == keys_len and length > block and length % block == 0
    n_blocks = length // block if blocked else 1
    rows = block if blocked else length
    # Split (not slice) into blocks: the gradient of a split is a concatenation, that of overlapping
    # slices a sum of zero-padded full-size tensors.
    q_blocks = jnp.split(qh, n_blocks, axis=3)
    k_blocks, v_blocks = jnp.split(kh, n_blocks, axis=2), jnp.split(vh, n_blocks, axis=2)
    outs = []
    for i in range(n_blocks):
        start = i * rows
        keys = start + rows if blocked else keys_len
        k_i = k_blocks[0] if i == 0 else jnp.concatenate(k_blocks[:i + 1], axis=2)
        v_i = v_blocks[0] if i == 0 else jnp.concatenate(v_blocks[:i + 1], axis=2)
        if mask is None:
            allowed = (jnp.arange(keys)[None, :] <= start + jnp.arange(rows)[:, None])[None, None, None]
        else:
            allowed = mask[:, :, None, start:start + rows, :keys]  # [B, 1, 1, rows, keys]
        outs.append(attend(q_blocks[i], k_i, v_i, allowed))
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, length, h, hd)


def attend_cache(q: Array, k: Array, v: Array, query_pos: Array) -> Array:
    """The decode mode's attention: q[B, H, L, D] at query_pos[B, L] over a per-row cache k, v[B, KV_H, S, D]
    -> [B, H, L, D]. Slot s is visible to a query at position p iff s <= p: slots are positions (each
    row's sequence starts at slot 0), so this is causal attention and it hides every slot not yet
    written for that row. q is cast to the cache's dtype, so scores, softmax input and the value sum
    run in it (fp32 by default).
    """
    b, h, length, d = q.shape
    kvh, slots = k.shape[1], k.shape[2]
    q = q.astype(k.dtype).reshape(b, kvh, h // kvh, length, d)
    # Einsum dots (in `attend`) rather than broadcast-multiply + reduce: measured at 8 rows x 1,280
    # slots, 4.0 vs 6.9 ms per layer (the reduce materialises the product); at short caches they are
    # about even.
    visible = jnp.arange(slots)[None, None, None, None, :] <= query_pos[:, None, None, :, None]
    return attend(q, k, v, visible, score_scale=d ** -0.5).reshape(b, h, length, d)


class Attention(nn.Module):
    """Grouped-query causal self-attention through `jax.nn.dot_product_attention` or `einsum_attention`.

    `mask` is a boolean [B, 1, L, L] (True = may attend; causal, restricted to a segment) or None for
    plain causal attention. Decoding with a KV cache is `patch_training.model_decode`.
    """
    config: "ModelConfig"

    @nn.compact
    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array | None) -> Array:
        cfg = self.config
        dtype, pdtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        d, h, kvh, hd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
        init = nn.initializers.normal(stddev=cfg.init_std)
        out_init = nn.initializers.normal(stddev=cfg.init_std / (2 * cfg.num_layers) ** 0.5)
        wq = partitioned_param(self, "q_proj", init, (d, h, hd), ("embed", "heads", "kv"), pdtype)
        wk = partitioned_param(self, "k_proj", init, (d, kvh, hd), ("embed", "kv_heads", "kv"), pdtype)
        wv = partitioned_param(self, "v_proj", init, (d, kvh, hd), ("embed", "kv_heads", "kv"), pdtype)
        wo = partitioned_param(self, "o_proj", out_init, (h, hd, d), ("heads", "kv", "embed"), pdtype)

        q = jnp.einsum("bld,dhk->blhk", x, wq.astype(dtype))
        k = jnp.einsum("bld,dhk->blhk", x, wk.astype(dtype))
        v = jnp.einsum("bld,dhk->blhk", x, wv.astype(dtype))
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
        k = nn.with_logical_constraint(k, ("batch", "length", "kv_heads", "kv"))
        v = nn.with_logical_constraint(v, ("batch", "length", "kv_heads", "kv"))
        q = apply_rotary(q, rope)
        k = apply_rotary(k, rope)

        impl = cfg.attention_impl
        if impl == "einsum":
            out = einsum_attention(q, k, v, mask, causal=True)
        elif mask is None:
            out = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=impl)
        elif impl == "cudnn":
            # cuDNN's fused kernel takes an additive bias, not a boolean mask.
            bias = jnp.where(mask, 0.0, _MASK_VALUE).astype(dtype)
            out = jax.nn.dot_product_attention(q, k, v, bias=bias, implementation=impl)
        else:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)
        out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))
        y = jnp.einsum("blhk,hkd->bld", out, wo.astype(dtype))
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


def out_major(dtype: Any) -> bool:
    """Whether the decode mode stores a matmul weight [out, in] for this compute dtype.

    Measured on XLA:CPU at decode shapes (8 rows): bf16 dots are up to ~1.7x faster with the
    contraction on the weight's minor axis; fp32 dots are faster [in, out]. Either way the weights are
    stored as 2-D matrices, so XLA never transposes a weight inside the decode loop.
    """
    return jnp.dtype(dtype) == jnp.bfloat16


def matmul(x: Array, w: Array) -> Array:
    """x[..., in] times a decode-mode 2-D weight, stored [in, out] or [out, in] (see `out_major`)."""
    if out_major(w.dtype):
        return jnp.einsum("...i,oi->...o", x, w)
    return jnp.einsum("...i,io->...o", x, w)


def _unconstrained(x: Array, _axes: tuple[str, ...]) -> Array:
    return x


def swiglu(x: Array, w: dict[str, Array], dtype, constrain=_unconstrained) -> Array:
    """The gated MLP down(silu(gate(x)) * up(x)) over x[B, L, D], with its weights in either layout:

    - the params (`SwiGLU`): gate_proj, up_proj [D, F] and down_proj [F, D] in the param dtype, cast
      to `dtype` at use, one dot each;
    - the decode mode's (`model_decode.decode_weights`): gate_up, gate and up fused into one 2-D
      matrix, and down, both already in the compute dtype and in the layout `out_major` picks.

    `constrain(hidden, logical_axes)` places the hidden activations (training: a logical constraint).
    """
    if "gate_up" in w:
        gate, up = jnp.split(matmul(x, w["gate_up"]), 2, axis=-1)
        down = lambda h: matmul(h, w["down"])
    else:
        gate = jnp.einsum("bld,df->blf", x, w["gate_proj"].astype(dtype))
        up = jnp.einsum("bld,df->blf", x, w["up_proj"].astype(dtype))
        down = lambda h: jnp.einsum("blf,fd->bld", h, w["down_proj"].astype(dtype))
    return down(constrain(jax.nn.silu(gate) * up, ("batch", "length", "mlp")))


class SwiGLU(nn.Module):
    """`swiglu` over its declared params."""
    config: "ModelConfig"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        pdtype = _dtype(cfg.param_dtype)
        d, f = cfg.hidden_size, cfg.intermediate_size
        init = nn.initializers.normal(stddev=cfg.init_std)
        out_init = nn.initializers.normal(stddev=cfg.init_std / (2 * cfg.num_layers) ** 0.5)
        w = {"gate_proj": partitioned_param(self, "gate_proj", init, (d, f), ("embed", "mlp"), pdtype),
             "up_proj": partitioned_param(self, "up_proj", init, (d, f), ("embed", "mlp"), pdtype),
             "down_proj": partitioned_param(self, "down_proj", out_init, (f, d), ("mlp", "embed"), pdtype)}
        y = swiglu(x, w, _dtype(cfg.dtype), constrain=nn.with_logical_constraint)
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)). Returns (x, None) so it can be scanned."""
    config: "ModelConfig"

    @nn.compact
    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array | None) -> tuple[Array, None]:
        cfg = self.config
        norm = lambda name: RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, name=name)
        x = x + Attention(cfg, name="attn")(norm("attn_norm")(x), rope, mask)
        x = x + SwiGLU(cfg, name="mlp")(norm("mlp_norm")(x))
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), None
