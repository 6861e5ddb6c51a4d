"""Patch mode of the Transformer: same parameters, mean-of-K embedding, patch positions."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training.model import Transformer


def test_patch_model_has_exactly_the_token_models_parameters(tiny_config, tiny_params):
    tokens = jnp.zeros((1, 16), jnp.int32)
    patch_vars = Transformer(tiny_config).init(jax.random.key(0), tokens, patch_size=4)
    patch_params = jax.tree_util.tree_map(lambda x: x, __import__("flax").linen.unbox(patch_vars["params"]))
    assert jax.tree_util.tree_structure(patch_params) == jax.tree_util.tree_structure(tiny_params)
    for a, b in zip(jax.tree_util.tree_leaves(patch_params), jax.tree_util.tree_leaves(tiny_params)):
        assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(patch_params)[0],
                                  jax.tree_util.tree_leaves(tiny_params)[0])


def test_patch_of_repeated_tokens_equals_token_forward(tiny_config, tiny_params):
    # A patch made of K copies of one token has that token's embedding, and sits at the patch index.
    model = Transformer(tiny_config)
    base = jax.random.randint(jax.random.key(1), (2, 6), 0, 97, dtype=jnp.int32)
    repeated = jnp.repeat(base, 4, axis=1)
    patch_logits = model.apply({"params": tiny_params}, repeated, patch_size=4)
    assert patch_logits.shape == (2, 6, 97)
    np.testing.assert_allclose(patch_logits, model.apply({"params": tiny_params}, base), atol=1e-5)


def test_patch_embedding_is_the_mean(tiny_config, tiny_params):
    # Swapping tokens inside a patch leaves the patch (and every logit) unchanged; across patches it does not.
    model = Transformer(tiny_config)
    tokens = jax.random.randint(jax.random.key(2), (1, 12), 0, 97, dtype=jnp.int32)
    inside = tokens.at[:, 0].set(tokens[:, 2]).at[:, 2].set(tokens[:, 0])
    out = model.apply({"params": tiny_params}, tokens, patch_size=3)
    np.testing.assert_allclose(model.apply({"params": tiny_params}, inside, patch_size=3), out, atol=1e-6)
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % 97)  # patch 2 of 4
    diff = np.abs(model.apply({"params": tiny_params}, changed, patch_size=3) - out).max(axis=-1)[0]
    assert diff[:2].max() == 0 and diff[2:].min() > 1e-5  # causal over patches
    bf16_mean = dataclasses.replace(tiny_config, patch_mean_in_bf16=True)
    np.testing.assert_allclose(Transformer(bf16_mean).apply({"params": tiny_params}, tokens, patch_size=3),
                               out, atol=0.05)


def test_patch_size_must_divide_length(tiny_config, tiny_params):
    with pytest.raises(ValueError, match="does not divide"):
        Transformer(tiny_config).apply({"params": tiny_params}, jnp.zeros((1, 10), jnp.int32), patch_size=4)
