"""The CPU bf16 training path: einsum attention, compute-dtype logits dot, per-jit oneDNN option.

Each is an option that changes speed, not results: fp32 logits stay those of the XLA attention path,
the oneDNN step gives the same losses as XLA's own kernels, and a bf16 run's loss curve tracks fp32.
(`benchmarks.bf16_loss_parity` runs the long version of the last check: 300 steps.)
"""
from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training import layers
from patch_training.errors import UserError
from patch_training.model import ModelConfig, Transformer, init_params
from patch_training.optimizer import OptimizerConfig
from patch_training.partitioning import global_batch, make_mesh, mesh_context
from patch_training.train_state import create_train_state
from patch_training.train_step import StepConfig, compile_train_step, step_compiler_options

from tests.support.synthetic import SyntheticData

FP32 = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                   num_kv_heads=2, scan_layers=False)
BF16_FAST = dataclasses.replace(FP32, dtype="bfloat16", attention_impl="einsum", logits_dot_fp32=False,
                                remat_policy="dots_no_batch")


@pytest.fixture(scope="module")
def params():
    return init_params(FP32, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def packed_batch():
    return SyntheticData(sequence_length=32).host_batch(0, 4)


def _logits(cfg: ModelConfig, params, tokens, **kw) -> np.ndarray:
    return np.asarray(Transformer(cfg).apply({"params": params}, jnp.asarray(tokens), **kw))


@pytest.mark.parametrize("query_block", [128, 8], ids=["one_block", "causal_blocks"])
def test_einsum_attention_equals_xla_attention_in_fp32(params, packed_batch, query_block, monkeypatch):
    # Rows of 32 tokens: with 8-row query blocks the training path splits the queries into 4 causal
    # blocks (keys 0..8, 0..16, ...), with 128 it runs as one block.
    monkeypatch.setattr(layers, "CAUSAL_QUERY_BLOCK", query_block)
    einsum = dataclasses.replace(FP32, attention_impl="einsum", logits_dot_fp32=False)
    tokens = packed_batch["decoder_input_tokens"]
    packed = dict(positions=jnp.asarray(packed_batch["decoder_positions"]),
                  segment_ids=jnp.asarray(packed_batch["decoder_segment_ids"]))
    for kw in ({}, packed):  # plain causal (mask None) and packed rows (segment mask)
        want = _logits(FP32, params, tokens, **kw)
        got = _logits(einsum, params, tokens, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Patch mode goes through the same attention.
    want = _logits(FP32, params, packed_batch["decoder_target_tokens"], patch_size=4)
    np.testing.assert_allclose(_logits(einsum, params, packed_batch["decoder_target_tokens"], patch_size=4),
                               want, rtol=1e-5, atol=1e-5)


def test_causal_blocks_give_the_unblocked_attention_and_gradients(monkeypatch):
    monkeypatch.setattr(layers, "CAUSAL_QUERY_BLOCK", 4)
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((2, 12, 4, 8)), jnp.float32)  # 4 query heads over 2 KV heads
    k, v = (jnp.asarray(rng.standard_normal((2, 12, 2, 8)), jnp.float32) for _ in range(2))
    segments = jnp.asarray([[1] * 5 + [2] * 7, [1] * 12])
    mask = ((segments[:, :, None] == segments[:, None, :]) & jnp.tril(jnp.ones((12, 12), bool)))[:, None]
    for m in (None, mask):
        def loss(q, k, v, causal):
            return jnp.sum(jnp.sin(layers.einsum_attention(q, k, v, m, causal=causal)))
        want = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, False)
        got = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, True)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rotary_tables_rotate_each_pair_by_position_times_frequency():
    # head_dim 4, theta 1e4: frequencies 1 and 1e4 ** -0.5 = 0.01; position 3 -> angles 3 and 0.03.
    cos, sin = layers.rotary_tables(jnp.asarray([[0, 3]]), 4, 1e4, jnp.float32)
    assert cos.shape == sin.shape == (1, 2, 1, 2)
    np.testing.assert_allclose(cos[0, 1, 0], np.cos([3.0, 0.03]), rtol=1e-6)
    np.testing.assert_allclose(sin[0, 1, 0], np.sin([3.0, 0.03]), rtol=1e-6)
    # "Rotate half": pairs are (x[i], x[i + 2]); x = e0 at position 3 turns into (cos 3, 0, sin 3, 0),
    # e1 by the slow frequency into (0, cos 0.03, 0, sin 0.03); position 0 leaves x unchanged.
    x = jnp.asarray([[[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]]] * 2).reshape(1, 2, 2, 4)
    out = np.asarray(layers.apply_rotary(x, (cos, sin)))
    np.testing.assert_allclose(out[0, 0], np.asarray(x[0, 0]), atol=1e-7)
    np.testing.assert_allclose(out[0, 1, 0], [np.cos(3.0), 0, np.sin(3.0), 0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1, 1], [0, np.cos(0.03), 0, np.sin(0.03)], atol=1e-6)


def test_bf16_fast_forward_is_close_to_fp32_and_returns_fp32_logits(params, packed_batch):
    tokens = packed_batch["decoder_input_tokens"]
    got = Transformer(BF16_FAST).apply({"params": params}, jnp.asarray(tokens))
    assert got.dtype == jnp.float32
    want = _logits(FP32, params, tokens)
    # bf16 keeps ~3 significant digits; logits of an initialised model are O(0.1).
    assert np.max(np.abs(np.asarray(got) - want)) < 2e-2


def test_compiler_options_only_for_cpu_and_by_choice():
    onednn = {"xla_cpu_experimental_onednn_custom_call": True, "xla_cpu_use_onednn": True,
              "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
    assert step_compiler_options(BF16_FAST, StepConfig(), "cpu") == onednn
    assert step_compiler_options(FP32, StepConfig(), "cpu") is None
    assert step_compiler_options(FP32, StepConfig(onednn_on_cpu="on"), "cpu") == onednn
    assert step_compiler_options(BF16_FAST, StepConfig(onednn_on_cpu="off"), "cpu") is None
    for platform in ("tpu", "gpu"):
        assert step_compiler_options(BF16_FAST, StepConfig(onednn_on_cpu="on"), platform) is None
    with pytest.raises(UserError):
        step_compiler_options(FP32, StepConfig(onednn_on_cpu="yes"), "cpu")


def _losses(cfg: ModelConfig, onednn: str, steps: int, batches: list[dict]):
    mesh = make_mesh((1, 1, 1))
    compiled = compile_train_step(cfg, OptimizerConfig(learning_rate=3e-3, warmup_steps=2), 100,
                                  StepConfig(onednn_on_cpu=onednn), mesh)
    state = create_train_state(cfg, compiled.tx, mesh, 0, compiled.shardings)
    out = []
    with mesh_context(mesh):
        # One compile: run the ahead-of-time executable whose HLO we inspect.
        executable = compiled.train_step.lower(state, global_batch(batches[0], mesh)).compile()
        hlo = executable.as_text()
        for step in range(steps):
            state, metrics = executable(state, global_batch(batches[step % len(batches)], mesh))
            out.append(metrics["loss"])
    return np.asarray(jax.device_get(out)), hlo


@pytest.fixture(scope="module")
def curves():
    """fp32 (XLA kernels) and the bf16 fast path with oneDNN on and off, 30 steps on the same data."""
    data = SyntheticData(sequence_length=32)
    batches = [data.host_batch(s, 8) for s in range(30)]
    return {name: _losses(cfg, onednn, 30, batches)
            for name, cfg, onednn in (("fp32", FP32, "off"), ("bf16", BF16_FAST, "auto"),
                                      ("bf16_xla", BF16_FAST, "off"))}


@pytest.mark.slow  # the shared `curves` fixture compiles three steps (~20 s on 2 cores)
def test_onednn_changes_kernels_not_losses(curves):
    on_losses, on_hlo = curves["bf16"]
    off_losses, off_hlo = curves["bf16_xla"]
    targets = lambda hlo: set(re.findall(r'custom_call_target="([^"]+)"', hlo))
    assert any("onednn" in t for t in targets(on_hlo))
    assert not any("onednn" in t for t in targets(off_hlo))
    # The library rewriter's route too: dots as oneDNN fusions (without it they go to YNNPACK).
    assert "__onednn_fusion" in on_hlo and "__onednn_fusion" not in off_hlo
    # Same numerics up to bf16 rounding differences between the two kernel libraries.
    np.testing.assert_allclose(on_losses, off_losses, rtol=2e-2)


@pytest.mark.slow
def test_bf16_loss_curve_tracks_fp32(curves):
    fp32, bf16 = curves["fp32"][0], curves["bf16"][0]
    assert fp32[-1] < 0.8 * fp32[0]  # it learns (4.18 -> 3.00 here), so the comparison means something
    window = 5
    smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")
    assert np.max(np.abs(smooth(fp32) - smooth(bf16))) < 0.05


def test_the_peak_is_labelled_with_the_kernel_path_the_step_takes():
    from patch_training.mfu import kernel_path_name
    from patch_training.train_step import ONEDNN_CPU_OPTIONS
    assert kernel_path_name("bfloat16", ONEDNN_CPU_OPTIONS) == "onednn_custom_call+onednn_fusion:bfloat16_matmul"
    assert kernel_path_name("bfloat16", {"xla_cpu_experimental_onednn_custom_call": True}) \
        == "onednn_custom_call:bfloat16_matmul"
    assert kernel_path_name("float32", None) == "xla_cpu_default:float32_matmul"
    assert kernel_path_name("bfloat16", ONEDNN_CPU_OPTIONS, platform="tpu") == "xla_tpu_default:bfloat16_matmul"
