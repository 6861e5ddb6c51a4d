"""Building blocks of the LLaMA-style decoder: RMSNorm, rotary embeddings, GQA attention, SwiGLU MLP.

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


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale; statistics in fp32."""
    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = partitioned_param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",),
                       _dtype(self.param_dtype))
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        # HF casts back to the activation dtype before the scale; keep that order for parity in bf16.
        return scale.astype(_dtype(self.dtype)) * normed.astype(_dtype(self.dtype))


def rotary_tables(positions: Array, head_dim: int, theta: float, dtype) -> tuple[Array, Array]:
    """(cos, sin) of the RoPE angles at integer positions[B, L], each [B, L, 1, head_dim/2] in `dtype`.

    The model computes them once per forward pass and hands them to every layer: computed inside
    each layer, XLA fuses the sine and cosine into every consumer (once per head, in the forward, the
    rematerialised forward and the backward), which cost about 6% of a bf16 CPU training step.
    """
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(0, half, dtype=jnp.float32) * 2.0 / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2], fp32
    tables = jnp.cos(angles)[:, :, None, :].astype(dtype), jnp.sin(angles)[:, :, None, :].astype(dtype)
    # The barrier makes XLA write the tables out once; without it XLA fuses the sine and cosine into
    # each consumer again.
    return jax.lax.optimization_barrier(tables)


def apply_rotary(x: Array, rope: tuple[Array, Array]) -> Array:
    """Apply RoPE ("rotate half" layout) to x[B, L, H, D] with `rotary_tables` (cos, sin)."""
    cos, sin = rope
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


# Causal self-attention (training, no KV cache) splits the queries into blocks of this many rows;
# block i scores only the keys up to its own last row, so most of the masked half of the [L, S]
# scores is never computed, and each block's softmax works on a cache-sized slice.
CAUSAL_QUERY_BLOCK = 128


def einsum_attention(q: Array, k: Array, v: Array, mask: Array | None, causal: bool = False) -> Array:
    """GQA attention with both dots in the inputs' dtype and the softmax in fp32.

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
    # Query heads h = kv_head * G + g, as in jax.nn.dot_product_attention.
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
        scores = jnp.einsum("bkgld,bksd->bkgls", q_blocks[i], k_i)
        if mask is None:
            allowed = (jnp.arange(keys)[None, :] <= start + jnp.arange(rows)[:, None])[None, None, None]
        else:
            allowed = mask[:, :, None, start:start + rows, :keys]  # [B, 1, 1, rows, keys]
        scores = jnp.where(allowed, scores.astype(jnp.float32), _MASK_VALUE)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        outs.append(jnp.einsum("bkgls,bksd->bkgld", probs, v_i))
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, length, h, hd)


class Attention(nn.Module):
    """Grouped-query self-attention through `jax.nn.dot_product_attention`, with an optional KV cache.

    `mask` is a boolean [B, 1, Lq, Lk] (True = may attend) or None for plain causal attention. In
    decode mode the keys/values of the new tokens are written into the cache at `cache_index` and
    attention runs over the whole cache; the caller's mask excludes unwritten slots.
    """
    config: "ModelConfig"
    decode: bool = False

    @nn.compact
    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array | None,
                 cache_index: Array | None) -> Array:
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

        if self.decode:
            k, v = self._update_cache(k, v, cache_index)

        impl = cfg.attention_impl
        if impl == "einsum":
            out = einsum_attention(q, k, v, mask, causal=not self.decode)
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

    def _update_cache(self, k: Array, v: Array, cache_index: Array) -> tuple[Array, Array]:
        b, length, kvh, hd = k.shape
        # Shape at creation comes from the init call (tokens of the cache length); see init_cache.
        ck = self.variable("cache", "cached_key", jnp.zeros, (b, length, kvh, hd), k.dtype)
        cv = self.variable("cache", "cached_value", jnp.zeros, (b, length, kvh, hd), v.dtype)
        start = (0, cache_index, 0, 0)
        ck.value = jax.lax.dynamic_update_slice(ck.value, k.astype(ck.value.dtype), start)
        cv.value = jax.lax.dynamic_update_slice(cv.value, v.astype(cv.value.dtype), start)
        axes = ("batch", "cache_length", "kv_heads", "kv")
        return (nn.with_logical_constraint(ck.value, axes),
                nn.with_logical_constraint(cv.value, axes))


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(gate(x)) * up(x))."""
    config: "ModelConfig"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        dtype, pdtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        d, f = cfg.hidden_size, cfg.intermediate_size
        init = nn.initializers.normal(stddev=cfg.init_std)
        out_init = nn.initializers.normal(stddev=cfg.init_std / (2 * cfg.num_layers) ** 0.5)
        w_gate = partitioned_param(self, "gate_proj", init, (d, f), ("embed", "mlp"), pdtype)
        w_up = partitioned_param(self, "up_proj", init, (d, f), ("embed", "mlp"), pdtype)
        w_down = partitioned_param(self, "down_proj", out_init, (f, d), ("mlp", "embed"), pdtype)
        gate = jnp.einsum("bld,df->blf", x, w_gate.astype(dtype))
        up = jnp.einsum("bld,df->blf", x, w_up.astype(dtype))
        hidden = nn.with_logical_constraint(nn.silu(gate) * up, ("batch", "length", "mlp"))
        y = jnp.einsum("blf,fd->bld", hidden, w_down.astype(dtype))
        return nn.with_logical_constraint(y, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)). Returns (x, None) so it can be scanned."""
    config: "ModelConfig"
    decode: bool = False

    @nn.compact
    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array | None,
                 cache_index: Array | None) -> tuple[Array, None]:
        cfg = self.config
        norm = lambda name: RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, name=name)
        h = Attention(cfg, decode=self.decode, name="attn")(
            norm("attn_norm")(x), rope, mask, cache_index)
        x = x + h
        x = x + SwiGLU(cfg, name="mlp")(norm("mlp_norm")(x))
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), None
