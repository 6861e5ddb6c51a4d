"""Unit tests of the trainer's pieces on one CPU device (tiny model, compiled once per module)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training import mfu as mfu_lib
from patch_training.errors import UserError
from patch_training.partitioning import make_mesh, resolve_axis_sizes
from patch_training.metrics import MetricsWriter, truncate_jsonl
from patch_training.model import ModelConfig, Transformer, forward_flops_per_token, init_params
from patch_training.optimizer import OptimizerConfig, decay_mask, learning_rate_schedule, make_optimizer
from patch_training.partitioning import check_batch_divisible, global_batch
from patch_training.train_state import create_train_state
from patch_training.train_step import StepConfig, compile_train_step

from tests.support.synthetic import SyntheticData

TINY = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                   num_kv_heads=2)


# -- mesh -------------------------------------------------------------------------------------
def test_mesh_rest_axis_and_errors():
    assert resolve_axis_sizes((2, -1, 1), 8) == (2, 4, 1)
    assert resolve_axis_sizes((2, 2, 2), 8) == (2, 2, 2)
    for bad, n, needle in [((3, -1, 1), 8, "does not divide the 8 devices"),
                           ((2, 2, 1), 8, "needs 4 devices but 8"),
                           ((-1, -1, 1), 8, "at most one axis")]:
        with pytest.raises(UserError) as e:
            resolve_axis_sizes(bad, n)
        assert needle in str(e.value) and "\n" not in str(e.value)
    mesh = make_mesh((1, 1, -1))
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_batch_not_divisible_by_data_parallel_size():
    mesh = make_mesh((1, 1, 1))
    check_batch_divisible(8, mesh, 2)
    with pytest.raises(UserError, match="num_microbatches=3"):
        check_batch_divisible(8, mesh, 3)
    fake = type("M", (), {"shape": {"data": 2, "fsdp": 2, "tensor": 1}})()
    with pytest.raises(UserError, match=r"not divisible by the data-parallel size 4"):
        check_batch_divisible(6, fake)


# -- optimizer --------------------------------------------------------------------------------
def test_weight_decay_only_on_matrices():
    params = init_params(TINY, jax.random.PRNGKey(0))
    mask = decay_mask(params)
    flat = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert flat["['embedding']"] and flat["['lm_head']"]
    assert flat["['layers']['attn']['q_proj']"] and flat["['layers']['mlp']['down_proj']"]
    # Scanned norm scales are 2-D ([layers, embed]) but must not decay.
    assert not flat["['layers']['attn_norm']['scale']"] and not flat["['final_norm']['scale']"]


def test_schedule_warmup_then_cosine():
    cfg = OptimizerConfig(learning_rate=1e-3, warmup_steps=10, end_lr_fraction=0.1)
    sched = learning_rate_schedule(cfg, 110)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(5e-4)
    assert float(sched(10)) == pytest.approx(1e-3)
    assert float(sched(60)) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-5)  # cosine midpoint
    assert float(sched(110)) == pytest.approx(1e-4)
    # The optimizer steps by that schedule, and hands back the same one for the trainer to log: the rate is 0
    # at step 0, so the first update is zero; the second is Adam's unit step scaled by lr(1), decay included.
    tx, logged = make_optimizer(cfg, 110)
    assert [float(logged(s)) for s in (0, 5, 60)] == [float(sched(s)) for s in (0, 5, 60)]
    params, grads = {"w": jnp.ones((2, 2))}, {"w": jnp.full((2, 2), 0.1)}   # norm 0.2: under the clip
    first, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(first["w"]), 0.0)
    second, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(np.asarray(second["w"]), -float(sched(1)) * (1 + cfg.weight_decay), rtol=1e-4)
    with pytest.raises(UserError):
        make_optimizer(OptimizerConfig(learning_rate=-1.0), 10)


def test_adamw_hyperparameters_and_clipping():
    # One step of AdamW from zero state: update = -lr * (g/|g|·clip... ) — check clipping caps the norm.
    cfg = OptimizerConfig(learning_rate=1.0, warmup_steps=0, weight_decay=0.0, clip_grad_norm=1.0)
    tx, _ = make_optimizer(cfg, 10)
    params = {"w": jnp.zeros((2, 2))}
    grads = {"w": jnp.full((2, 2), 100.0)}
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is sign-like: -lr * g_hat/(|g_hat|+eps) = -1 for every element.
    np.testing.assert_allclose(np.asarray(updates["w"]), -1.0, rtol=1e-5)
    # That first step is the sign of the gradient with or without clipping, so it cannot show the
    # clip. With eps comparable to the clipped gradient it can: the global norm is 200, clipped to 1,
    # so each element becomes 0.5 and the update is -0.5/(0.5 + 1) (unclipped: -100/101).
    tx, _ = make_optimizer(dataclasses.replace(cfg, eps=1.0), 10)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -1.0 / 3.0, rtol=1e-5)
    # Decoupled weight decay on matrices: lr * wd * w is subtracted on top of the Adam step.
    tx, _ = make_optimizer(dataclasses.replace(cfg, eps=1.0, weight_decay=0.1), 10)
    ones = {"w": jnp.ones((2, 2))}
    updates, _ = tx.update(grads, tx.init(ones), ones)
    np.testing.assert_allclose(np.asarray(updates["w"]), -1.0 / 3.0 - 0.1, rtol=1e-5)


# -- MFU --------------------------------------------------------------------------------------
def test_training_flops_follow_maxtext_convention():
    seq, batch = 128, 4
    flops = mfu_lib.training_flops_per_step(TINY, seq, batch)
    assert flops == pytest.approx(3 * forward_flops_per_token(TINY, seq, causal_halved=True) * seq * batch)
    d, f, L, V = 32, 64, 2, 64
    matmul = L * 2 * (d * d + 2 * d * 2 * 8 + d * d + 3 * d * f) + 2 * d * V
    attention = L * 4 * seq * 4 * 8 * 0.5
    assert forward_flops_per_token(TINY, seq) == pytest.approx(matmul + attention)
    assert "causal" in mfu_lib.MFU_METRIC
    assert mfu_lib.table_peak_tflops("TPU v5 lite") == 197 and mfu_lib.table_peak_tflops("TPU v4") == 275
    assert mfu_lib.table_peak_tflops("TPU v5p") == 459 and mfu_lib.table_peak_tflops("TPU v6e") == 918
    assert mfu_lib.table_peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert mfu_lib.mfu(1e12, 1.0, 2.0, 1) == pytest.approx(0.5)
    assert mfu_lib.measure_matmul_peak_tflops("float32", n=256, repeats=2) > 0


# -- metrics ----------------------------------------------------------------------------------
def test_metrics_jsonl_full_precision_and_truncation(tmp_path: Path):
    w = MetricsWriter(tmp_path, tensorboard=False)
    x = 0.1 + 0.2  # not representable in few digits
    for step in range(1, 6):
        w.write(step, {"loss": x * step, "nan": float("nan")})
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 1.')  # a line cut by SIGKILL
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()[:5]]
    assert rows[2]["loss"] == x * 3 and rows[0]["nan"] == "nan"
    assert truncate_jsonl(tmp_path / "metrics.jsonl", 3) == 3
    assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


# -- train step -------------------------------------------------------------------------------
def _step_fn(num_microbatches: int, patch_size: int = 1):
    mesh = make_mesh((1, 1, 1))
    compiled = compile_train_step(TINY, OptimizerConfig(learning_rate=1e-3, warmup_steps=0), 10,
                                  StepConfig(patch_size, num_microbatches), mesh)
    state = create_train_state(TINY, compiled.tx, mesh, 0, compiled.shardings)
    return mesh, state, compiled.train_step


def test_gradient_accumulation_matches_full_batch():
    data = SyntheticData(sequence_length=32)
    mesh, state1, step1 = _step_fn(1)
    _, state4, step4 = _step_fn(4)
    batch = global_batch(data.host_batch(0, 8), mesh)
    new1, m1 = step1(state1, batch)
    new4, m4 = step4(state4, batch)
    assert float(m1["loss"]) == pytest.approx(float(m4["loss"]), rel=1e-5)
    assert float(m1["grad_norm"]) == pytest.approx(float(m4["grad_norm"]), rel=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(new1.params), jax.tree_util.tree_leaves(new4.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert int(new4.step) == 1 and math.isfinite(float(m4["learning_rate"]))


def test_patch_mode_step_uses_patch_loss():
    from patch_training.patch_loss import patch_loss
    data = SyntheticData(sequence_length=32)
    mesh, state, step = _step_fn(1, patch_size=4)
    host = data.host_batch(0, 8)
    batch = global_batch(host, mesh)
    params = state.params
    logits = Transformer(TINY).apply({"params": params}, jnp.asarray(host["decoder_target_tokens"]), patch_size=4)
    expected, _ = patch_loss(logits, jnp.asarray(host["decoder_target_tokens"]), 4,
                             jnp.asarray(host["decoder_loss_weights"]))
    _, metrics = step(state, batch)
    assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-5)
