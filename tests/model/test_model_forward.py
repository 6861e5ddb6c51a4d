"""Shapes, logical axes, causality, segment masking, remat/scan equivalence of the Transformer."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training.errors import UserError
from patch_training.model import (ModelConfig, Transformer, abstract_params, count_params,
                                  forward_flops_per_token, init_params)


def _tokens(seed, shape, vocab=97):
    return jax.random.randint(jax.random.key(seed), shape, 0, vocab, dtype=jnp.int32)


def test_shapes_and_dtypes(tiny_config, tiny_params):
    logits = Transformer(tiny_config).apply({"params": tiny_params}, _tokens(1, (3, 10)))
    assert logits.shape == (3, 10, 97) and logits.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(tiny_params))
    # bf16 compute keeps fp32 params and fp32 logits.
    bf16 = dataclasses.replace(tiny_config, dtype="bfloat16")
    out = Transformer(bf16).apply({"params": tiny_params}, _tokens(1, (3, 10)))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, logits, atol=0.05)


def test_logical_axes_on_every_parameter(tiny_config):
    specs = nn.get_partition_spec(abstract_params(tiny_config))
    flat = {jax.tree_util.keystr(k): v for k, v in
            jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))[0]}
    assert flat["['embedding']"] == jax.sharding.PartitionSpec("vocab", "embed")
    assert flat["['lm_head']"] == jax.sharding.PartitionSpec("embed", "vocab")
    assert flat["['layers']['attn']['q_proj']"] == jax.sharding.PartitionSpec("layers", "embed", "heads", "kv")
    assert flat["['layers']['attn']['k_proj']"] == jax.sharding.PartitionSpec("layers", "embed", "kv_heads", "kv")
    assert flat["['layers']['mlp']['down_proj']"] == jax.sharding.PartitionSpec("layers", "mlp", "embed")
    shapes = jax.tree_util.tree_leaves(nn.unbox(abstract_params(tiny_config)))
    for spec, shape in zip(jax.tree_util.tree_leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)), shapes):
        assert len(spec) == len(shape.shape) and all(name is not None for name in spec)


def test_tied_embeddings_have_no_head(tiny_config):
    tied = dataclasses.replace(tiny_config, tie_embeddings=True)
    params = init_params(tied, jax.random.key(0))
    assert "lm_head" not in params
    assert count_params(params) == count_params(init_params(tiny_config, jax.random.key(0))) - 32 * 97


def test_causality(tiny_config, tiny_params):
    model = Transformer(tiny_config)
    tokens = _tokens(2, (2, 12))
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % 97)
    a = model.apply({"params": tiny_params}, tokens)
    b = model.apply({"params": tiny_params}, changed)
    np.testing.assert_array_equal(a[:, :7], b[:, :7])
    assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-4


def test_segment_masking_equals_separate_documents(tiny_config, tiny_params):
    model = Transformer(tiny_config)
    doc_a, doc_b = _tokens(3, (1, 5)), _tokens(4, (1, 7))
    packed = jnp.concatenate([doc_a, doc_b], axis=1)
    segments = jnp.array([[1] * 5 + [2] * 7], jnp.int32)
    positions = jnp.array([list(range(5)) + list(range(7))], jnp.int32)
    out = model.apply({"params": tiny_params}, packed, segment_ids=segments, positions=positions)
    np.testing.assert_allclose(out[:, :5], model.apply({"params": tiny_params}, doc_a), atol=1e-5)
    np.testing.assert_allclose(out[:, 5:], model.apply({"params": tiny_params}, doc_b), atol=1e-5)
    # Without the segment ids, the second document sees the first.
    leaky = model.apply({"params": tiny_params}, packed, positions=positions)
    assert np.abs(leaky[:, 5:] - out[:, 5:]).max() > 1e-4


def test_unscanned_and_remat_match_scanned(tiny_config, tiny_params):
    tokens = _tokens(5, (2, 9))
    ref = Transformer(tiny_config).apply({"params": tiny_params}, tokens)
    unscanned = dataclasses.replace(tiny_config, scan_layers=False, remat_policy="full")
    layer_params = {f"layers_{i}": jax.tree_util.tree_map(lambda x: x[i], tiny_params["layers"])
                    for i in range(tiny_config.num_layers)}
    params = {**{k: v for k, v in tiny_params.items() if k != "layers"}, **layer_params}
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        init_params(unscanned, jax.random.key(0)))
    np.testing.assert_allclose(Transformer(unscanned).apply({"params": params}, tokens), ref, atol=1e-5)
    # Remat changes memory, never values or gradients.
    remat = dataclasses.replace(tiny_config, remat_policy="dots")
    loss = lambda cfg: jax.grad(lambda p: Transformer(cfg).apply({"params": p}, tokens).sum())(tiny_params)
    for g1, g2 in zip(jax.tree_util.tree_leaves(loss(tiny_config)), jax.tree_util.tree_leaves(loss(remat))):
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_errors(tiny_config):
    assert ModelConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(UserError, match="num_kv_heads"):
        dataclasses.replace(tiny_config, num_kv_heads=3)
    with pytest.raises(UserError, match="remat_policy"):
        dataclasses.replace(tiny_config, remat_policy="sometimes")
    with pytest.raises(UserError, match="unknown field"):
        ModelConfig.from_dict({**tiny_config.to_dict(), "n_layer": 3})


def test_flops_per_token_matches_parameter_count():
    cfg = ModelConfig(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_layers=8,
                      num_heads=8, num_kv_heads=8)
    n = count_params(abstract_params(cfg))
    assert 33e6 < n < 35e6  # the "about 34M" for `small`
    matmul_params = n - 8192 * 512 - 512 * (2 * 8 + 1)  # minus embedding table and norm scales
    no_attention = forward_flops_per_token(cfg, 0)
    assert no_attention == 2 * matmul_params
    assert forward_flops_per_token(cfg, 100, causal_halved=False) - no_attention == 8 * 4 * 100 * 512
    assert forward_flops_per_token(cfg, 100) - no_attention == 8 * 2 * 100 * 512
