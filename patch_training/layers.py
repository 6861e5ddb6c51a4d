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


def rotary_embedding(x: Array, positions: Array, theta: float) -> Array:
    """Apply RoPE ("rotate half" layout) to x[B, L, H, D] at integer positions[B, L]."""
    head_dim = x.shape[-1]
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(0, half, dtype=jnp.float32) * 2.0 / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
    cos = jnp.cos(angles)[:, :, None, :].astype(x.dtype)
    sin = jnp.sin(angles)[:, :, None, :].astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def einsum_attention(q: Array, k: Array, v: Array, mask: Array | None) -> Array:
    """Causal GQA attention with both dots in the inputs' dtype and the softmax in fp32.

    q[B, L, H, D], k/v[B, S, KV_H, D]; `mask` [B, 1, L, S] (True = may attend) or None for plain
    causal attention (L == S). Why not `jax.nn.dot_product_attention` on CPU: in bf16 it asks XLA for
    bf16-in/fp32-out dots and keeps fp32 probabilities for the backward pass; XLA:CPU then runs both
    dots as slow fp32 dots. Here the scores come out in the compute dtype, are upcast for a fp32
    softmax, and the probabilities are cast back before the second dot (PyTorch autocast does the
    same). In fp32 it computes exactly what the XLA implementation does.
    """
    b, length, h, hd = q.shape
    kvh = k.shape[2]
    groups = h // kvh
    # [B, L, KV_H, G, D]: query heads h = kv_head * G + g, as in jax.nn.dot_product_attention.
    qg = q.reshape(b, length, kvh, groups, hd) * jnp.asarray(hd ** -0.5, q.dtype)
    scores = jnp.einsum("blkgd,bskd->bkgls", qg, k)
    if mask is None:
        allowed = jnp.tril(jnp.ones((length, k.shape[1]), dtype=bool))[None, None, None]
    else:
        allowed = mask[:, :, None]  # [B, 1, 1, L, S]
    scores = jnp.where(allowed, scores.astype(jnp.float32), _MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v)
    return out.reshape(b, length, h, hd)


class Attention(nn.Module):
    """Grouped-query self-attention through `jax.nn.dot_product_attention`, with an optional KV cache.

    `mask` is a boolean [B, 1, Lq, Lk] (True = may attend) or None for plain causal attention. In
    decode mode the keys/values of the new tokens are written into the cache at `cache_index` and
    attention runs over the whole cache; the caller's mask excludes unwritten slots.
    """
    config: "ModelConfig"
    decode: bool = False

    @nn.compact
    def __call__(self, x: Array, positions: Array, mask: Array | None,
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
        q = rotary_embedding(q, positions, cfg.rope_theta)
        k = rotary_embedding(k, positions, cfg.rope_theta)

        if self.decode:
            k, v = self._update_cache(k, v, cache_index)

        impl = cfg.attention_impl
        if impl == "einsum":
            out = einsum_attention(q, k, v, mask)
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
    def __call__(self, x: Array, positions: Array, mask: Array | None,
                 cache_index: Array | None) -> tuple[Array, None]:
        cfg = self.config
        norm = lambda name: RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, name=name)
        h = Attention(cfg, decode=self.decode, name="attn")(
            norm("attn_norm")(x), positions, mask, cache_index)
        x = x + h
        x = x + SwiGLU(cfg, name="mlp")(norm("mlp_norm")(x))
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), None
