"""next_token_loss and patch_loss against hand-written numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training.errors import UserError
from patch_training.patch_loss import next_token_loss, patch_loss


def _numpy_patch_loss(logits, tokens, k, weights):
    b, t, v = logits.shape
    total, norm = 0.0, 0.0
    for bi in range(b):
        for i in range(t - 1):
            row = logits[bi, i].astype(np.float64)
            log_probs = row - (np.log(np.sum(np.exp(row - row.max()))) + row.max())
            for kk in range(k):
                pos = (i + 1) * k + kk
                total += -log_probs[tokens[bi, pos]] * weights[bi, pos]
                norm += weights[bi, pos]
    return total / norm, total, norm


@pytest.mark.parametrize("k", [1, 2, 4])
def test_patch_loss_matches_numpy_reference(k):
    rng = np.random.default_rng(k)
    b, t, v = 3, 5, 11
    logits = rng.normal(size=(b, t, v)).astype(np.float32) * 3
    tokens = rng.integers(0, v, size=(b, k * t)).astype(np.int32)
    weights = (rng.random((b, k * t)) > 0.3).astype(np.float32)
    ref, ref_sum, ref_norm = _numpy_patch_loss(logits, tokens, k, weights)
    loss, aux = patch_loss(jnp.asarray(logits), jnp.asarray(tokens), k, jnp.asarray(weights))
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(aux["loss_sum"], ref_sum, rtol=1e-5)
    np.testing.assert_allclose(aux["weight_sum"], ref_norm)
    unweighted, _ = patch_loss(jnp.asarray(logits), jnp.asarray(tokens), k)
    np.testing.assert_allclose(unweighted, _numpy_patch_loss(logits, tokens, k, np.ones_like(weights))[0],
                               rtol=1e-5)


def test_k1_is_exactly_next_token_cross_entropy():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(4, 9, 13)).astype(np.float32))
    tokens = jnp.asarray(rng.integers(0, 13, size=(4, 9)).astype(np.int32))
    weights = jnp.asarray((rng.random((4, 9)) > 0.2).astype(np.float32))
    patch, patch_aux = jax.jit(patch_loss, static_argnums=2)(logits, tokens, 1, weights)
    token, token_aux = jax.jit(next_token_loss)(logits[:, :-1], tokens[:, 1:], weights[:, 1:])
    assert float(patch) == float(token)
    assert float(patch_aux["loss_sum"]) == float(token_aux["loss_sum"])
    # And next_token_loss is the plain mean cross-entropy.
    log_probs = jax.nn.log_softmax(logits[:, :-1])
    nll = -jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(token, jnp.sum(nll * weights[:, 1:]) / jnp.sum(weights[:, 1:]), rtol=1e-6)


def test_all_padding_gives_zero_not_nan():
    loss, _ = next_token_loss(jnp.zeros((1, 3, 5)), jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 3)))
    assert float(loss) == 0.0


def test_bad_patch_size_is_refused():
    with pytest.raises(UserError, match="does not divide"):
        patch_loss(jnp.zeros((1, 3, 5)), jnp.zeros((1, 10), jnp.int32), 4)
    with pytest.raises(ValueError, match="do not match"):
        patch_loss(jnp.zeros((1, 3, 5)), jnp.zeros((1, 8), jnp.int32), 4)
