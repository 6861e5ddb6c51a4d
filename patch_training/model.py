"""The LLaMA-style decoder (Flax Linen) with its patch mode.

`Transformer(config)(tokens)` returns fp32 logits. Two ways to call it:

- token mode (`patch_size=1`): logits[B, L, V]; causal attention, restricted to equal
  `segment_ids` when rows are packed.
- patch mode (`patch_size=K`): the K·T input tokens are embedded with the same table and averaged in
  groups of K, giving T patch embeddings at positions 0..T-1; attention is causal over patches and
  the one output head gives logits[B, T, V] (see `patch_loss.patch_loss`). No extra parameters.

Decoding and scoring run the model's decode mode, `patch_training.model_decode`: the same layer
functions (`layers`) over the same params, unstacked and fused once, with a per-row KV cache.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from patch_training.errors import UserError
from patch_training.layers import DecoderLayer, RMSNorm, partitioned_param, rotary_tables

Array = jax.Array

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "everything": jax.checkpoint_policies.everything_saveable,
}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and numerics of the decoder. JSON round-trips through `to_dict`/`from_dict`.

    `max_seq_len` is the model's positional capacity (HF's `max_position_embeddings`: the longest
    prompt + generation the decode cache and an HF export allow), not the training row length; a
    run's tokens per row are `TrainerConfig.sequence_length` and its positions inside the network
    (tokens per row / K) are what the FLOP formulas call `network_length`.
    """
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_layers: bool = True
    max_seq_len: int = 2048           # positional capacity (HF max_position_embeddings), not a row length
    init_std: float = 0.02
    # None lets JAX choose (XLA today); "cudnn" asks for the fused GPU kernel; "einsum" is our own
    # attention with both dots in the compute dtype and an fp32 softmax (layers.einsum_attention):
    # the fast choice for bf16 on CPU, identical to the XLA path in fp32.
    attention_impl: str | None = None
    # The unembedding dot's output type. True: fp32 accumulation and output from compute-dtype inputs
    # (what TPU/GPU want). False: a plain compute-dtype dot, cast to fp32 after; on CPU, XLA turns
    # the mixed bf16-in/fp32-out dot into a slow fp32 dot, so the CPU bf16 configs use False.
    logits_dot_fp32: bool = True
    # The official patch-training code casts embeddings to bf16 before averaging a patch; this
    # reproduces that rounding. Default: average in fp32.
    patch_mean_in_bf16: bool = False

    def __post_init__(self):
        checks = [
            (self.num_heads % self.num_kv_heads == 0,
             f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"),
            (self.head_dim is not None or self.hidden_size % self.num_heads == 0,
             f"hidden_size={self.hidden_size} not divisible by num_heads={self.num_heads}"),
            (self.resolved_head_dim % 2 == 0, f"head_dim={self.resolved_head_dim} must be even"),
            (self.remat_policy in REMAT_POLICIES,
             f"remat_policy={self.remat_policy!r}: expected one of {sorted(REMAT_POLICIES)}"),
            (self.dtype in ("float32", "bfloat16", "float16"),
             f"dtype={self.dtype!r}: expected float32, bfloat16 or float16"),
            (self.attention_impl in (None, "xla", "cudnn", "einsum"),
             f"attention_impl={self.attention_impl!r}: expected None, 'xla', 'cudnn' or 'einsum'"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"ModelConfig: {message}")

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"model config: unknown field(s) {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise UserError(f"model config: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


class Transformer(nn.Module):
    """Decoder-only LM. See the module docstring for the call modes."""
    config: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, *, positions: Array | None = None,
                 segment_ids: Array | None = None, patch_size: int = 1) -> Array:
        cfg = self.config
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tokens.shape}")
        batch, length = tokens.shape

        embedding = partitioned_param(self, "embedding", nn.initializers.normal(stddev=cfg.init_std),
                           (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), pdtype)
        x = jnp.take(embedding, tokens, axis=0)
        if patch_size > 1:
            x, segment_ids = self._to_patches(x, segment_ids, patch_size)
            length = x.shape[1]
        x = nn.with_logical_constraint(x.astype(dtype), ("batch", "length", "embed"))

        mask = None
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
        if segment_ids is not None:
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            causal = jnp.tril(jnp.ones((length, length), dtype=bool))
            mask = (same & causal[None])[:, None]  # [B, 1, L, L]

        rope = rotary_tables(positions, cfg.resolved_head_dim, cfg.rope_theta, dtype)
        x = self._layers()(x, rope, mask)[0]
        x = RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, name="final_norm")(x)
        out_type = jnp.float32 if cfg.logits_dot_fp32 else None
        if cfg.tie_embeddings:
            logits = jnp.einsum("bld,vd->blv", x, embedding.astype(dtype), preferred_element_type=out_type)
        else:
            head = partitioned_param(self, "lm_head", nn.initializers.normal(stddev=cfg.init_std),
                          (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), pdtype)
            logits = jnp.einsum("bld,dv->blv", x, head.astype(dtype), preferred_element_type=out_type)
        return nn.with_logical_constraint(logits.astype(jnp.float32), ("batch", "length", "vocab"))

    def _to_patches(self, x: Array, segment_ids: Array | None, k: int):
        batch, length, dim = x.shape
        if length % k:
            raise ValueError(f"patch_size={k} does not divide the sequence length {length}")
        t = length // k
        if self.config.patch_mean_in_bf16:
            x = x.astype(jnp.bfloat16)
        x = x.reshape(batch, t, k, dim).mean(axis=2)
        if segment_ids is not None and segment_ids.shape[1] == length:
            # A patch belongs to the segment of its first token.
            segment_ids = segment_ids[:, ::k]
        return x, segment_ids

    def _layers(self):
        cfg = self.config
        layer_cls = DecoderLayer
        policy = REMAT_POLICIES[cfg.remat_policy]
        if cfg.remat_policy != "none":
            layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            stack = nn.scan(
                layer_cls,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, name="layers")
            return stack

        layers = [layer_cls(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]

        def run(x, rope, mask):
            for layer in layers:
                x, _ = layer(x, rope, mask)
            return x, None
        return run


# ----------------------------------------------------------------------------- helpers


def _dummy_tokens(batch: int, length: int) -> Array:
    return jnp.zeros((batch, length), jnp.int32)


def init_params(config: ModelConfig, rng: Array, batch: int = 1, length: int = 8) -> Any:
    """Randomly initialised, unboxed parameter pytree (param_dtype, normally fp32)."""
    variables = Transformer(config).init(rng, _dummy_tokens(batch, length))
    return nn.unbox(variables["params"])


def abstract_params(config: ModelConfig) -> Any:
    """Boxed (`nn.LogicallyPartitioned`) ShapeDtypeStructs of the params, for sharding decisions."""
    variables = jax.eval_shape(
        lambda: Transformer(config).init(jax.random.key(0), _dummy_tokens(1, 8)))
    return variables["params"]


def count_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(p)) for p in jax.tree_util.tree_leaves(nn.unbox(params))))


def forward_flops_per_token(config: ModelConfig, network_length: int, causal_halved: bool = True) -> float:
    """Analytic forward FLOPs per position (MaxText convention).

    Matmuls: QKV, output projection, SwiGLU MLP, unembedding (2 FLOPs per multiply-add; the
    embedding lookup is free). Attention scores and values: 4·N·H·D per position and layer, halved
    when `causal_halved` because half the score matrix is masked. Training FLOPs = 3× this.
    `network_length` is the number of positions inside the network (tokens per row / K): in patch
    mode the number of patches, counted per patch.
    """
    d, f, hd = config.hidden_size, config.intermediate_size, config.resolved_head_dim
    h, kvh = config.num_heads, config.num_kv_heads
    per_layer = 2 * (d * h * hd + 2 * d * kvh * hd + h * hd * d + 3 * d * f)
    attention = 4 * network_length * h * hd * (0.5 if causal_halved else 1.0)
    unembed = 2 * d * config.vocab_size
    return float(config.num_layers * (per_layer + attention) + unembed)
