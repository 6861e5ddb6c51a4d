"""The pure training step: `train_step(state, batch) -> (state, metrics)`.

- Gradient accumulation: the global batch is split into `num_microbatches` rows-wise and scanned
  with `lax.scan`; gradients of the *summed* loss are accumulated and divided by the total weight,
  so any number of microbatches gives the gradient of the full-batch mean loss.
- Mixed precision: params stay fp32; the model casts to its compute dtype; loss and grads are fp32.
- `patch_size` K is static. K=1 trains on next-token prediction over `decoder_input_tokens` ->
  `decoder_target_tokens` with segment ids and positions; K>1 feeds `decoder_target_tokens` (K·T
  tokens) to the model in patch mode and uses the patch loss.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from patch_training.train_state import TrainState

Batch = dict[str, jax.Array]


# XLA:CPU's own bf16 dot kernels are slow. Two oneDNN routes, both needed (small bf16 step, 8x512, 2 cores):
# the custom-call rewriter takes the dots it pattern-matches (25 of them, above all the weight gradients;
# ~960 tokens/s with it alone); the library rewriter (`use_onednn` + the DOT fusion type) then takes
# ~230 of the ~400 YNNPACK fusions the rest would become (~1,110 tokens/s, same losses bit for bit). Set per jit (train and eval steps only): globally they slow the small-batch decode matmuls.
ONEDNN_CPU_OPTIONS = {"xla_cpu_experimental_onednn_custom_call": True, "xla_cpu_use_onednn": True,
                      "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
ONEDNN_CHOICES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    patch_size: int = 1
    num_microbatches: int = 1
    # oneDNN custom calls for the compiled steps on CPU: "auto" = on when the compute dtype is
    # bfloat16 (where it is 3x faster), "on", "off". Ignored on TPU/GPU.
    onednn_on_cpu: str = "auto"


def step_compiler_options(model_config, cfg: StepConfig, platform: str) -> dict[str, Any] | None:
    """Per-jit XLA options for the train/eval steps on `platform` (None: XLA's defaults)."""
    if cfg.onednn_on_cpu not in ONEDNN_CHOICES:
        from patch_training.errors import UserError
        raise UserError(f"StepConfig.onednn_on_cpu={cfg.onednn_on_cpu!r}: expected one of {ONEDNN_CHOICES}")
    if platform != "cpu" or cfg.onednn_on_cpu == "off":
        return None
    if cfg.onednn_on_cpu == "on" or model_config.dtype == "bfloat16":
        return dict(ONEDNN_CPU_OPTIONS)
    return None


def loss_and_stats(params: Any, batch: Batch, model, patch_size: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(summed loss, {"loss_sum", "weight_sum"}) for one (micro)batch. Pure; the model has no dropout."""
    from patch_training.patch_loss import next_token_loss, patch_loss
    if patch_size == 1:
        logits = model.apply({"params": params}, batch["decoder_input_tokens"],
                             positions=batch.get("decoder_positions"),
                             segment_ids=batch.get("decoder_segment_ids"))
        _, stats = next_token_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
    else:
        logits = model.apply({"params": params}, batch["decoder_target_tokens"], patch_size=patch_size)
        _, stats = patch_loss(logits, batch["decoder_target_tokens"], patch_size,
                              batch.get("decoder_loss_weights"))
    stats = {"loss_sum": stats["loss_sum"].astype(jnp.float32),
             "weight_sum": stats["weight_sum"].astype(jnp.float32)}
    return stats["loss_sum"], stats


def _split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
    def split(x):
        b = x.shape[0]
        # Interleave (row i -> microbatch i % M) so every microbatch keeps an even share of each
        # data-parallel shard and the reshape needs no cross-device data movement.
        return x.reshape((b // num_microbatches, num_microbatches) + x.shape[1:]).swapaxes(0, 1)
    return jax.tree_util.tree_map(split, batch)


def make_train_step(model, tx: optax.GradientTransformation, schedule: Callable[[Any], Any],
                    cfg: StepConfig) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Build the pure step. Jit it with shardings and `donate_argnums=0` (see trainer)."""
    grad_fn = jax.grad(loss_and_stats, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        def micro(carry, mb):
            grads_acc, loss_acc, weight_acc = carry
            grads, stats = grad_fn(state.params, mb, model, cfg.patch_size)
            grads_acc = jax.tree_util.tree_map(jnp.add, grads_acc, grads)
            return (grads_acc, loss_acc + stats["loss_sum"], weight_acc + stats["weight_sum"]), None

        if cfg.num_microbatches == 1:
            grads, stats = grad_fn(state.params, batch, model, cfg.patch_size)
            loss_sum, weight_sum = stats["loss_sum"], stats["weight_sum"]
        else:
            zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            mbs = _split_microbatches(batch, cfg.num_microbatches)
            (grads, loss_sum, weight_sum), _ = jax.lax.scan(
                micro, (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
                mbs)
        denom = jnp.maximum(weight_sum, 1.0)
        grads = jax.tree_util.tree_map(lambda g: g / denom, grads)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss_sum / denom,
            "grad_norm": grad_norm,
            "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
            "param_norm": optax.tree.norm(params),
            "weight_sum": weight_sum,
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(model, patch_size: int = 1) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """Pure eval step: summed loss and weight for one batch (for loss/perplexity over a pass)."""
    def eval_step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        _, stats = loss_and_stats(params, batch, model, patch_size)
        return stats
    return eval_step


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
    """Everything a run needs to step: optimizer, schedule, state shardings and the jitted functions."""
    tx: optax.GradientTransformation
    schedule: Callable[[Any], Any]
    shardings: TrainState
    train_step: Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]
    eval_step: Callable[[Any, Batch], dict[str, jax.Array]]
    compiler_options: dict[str, Any] | None = None   # the per-jit XLA options both steps use


@functools.lru_cache(maxsize=16)
def compile_train_step(model_config, optimizer_config, num_steps: int, cfg: StepConfig, mesh) -> CompiledSteps:
    """The one place that builds the jitted, sharded, state-donating train step (and the eval step).

    Used by the trainer, the benchmarks and the tests (MaxText's
    `get_functional_train_with_signature`). Cached per (model, optimizer, steps, step config, mesh):
    runs with the same shapes in one process (the stages of a resumed experiment, tests) reuse the
    compiled executables instead of tracing and compiling again.
    """
    from patch_training import partitioning as sharding_lib
    from patch_training.model import Transformer
    from patch_training.optimizer import make_optimizer
    from patch_training.train_state import state_shardings

    tx, schedule = make_optimizer(optimizer_config, num_steps)
    shardings = state_shardings(model_config, tx, mesh)
    model = Transformer(model_config)
    batch_sh = sharding_lib.batch_sharding(mesh)
    rep = sharding_lib.replicated(mesh)
    options = step_compiler_options(model_config, cfg, mesh.devices.flat[0].platform)
    train_step = jax.jit(make_train_step(model, tx, schedule, cfg), in_shardings=(shardings, batch_sh),
                         out_shardings=(shardings, rep), donate_argnums=0, compiler_options=options)
    # Validation is always token level: the metric users compare is per-token perplexity.
    eval_step = jax.jit(make_eval_step(model, 1), in_shardings=(shardings.params, batch_sh), out_shardings=rep,
                        compiler_options=options)
    return CompiledSteps(tx, schedule, shardings, train_step, eval_step, options)
