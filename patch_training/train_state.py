"""The training state: step, fp32 params, optimizer state and the RNG key, created already sharded."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from patch_training import partitioning as sharding_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: number of optimizer updates applied
    params: Any              # unboxed fp32 pytree (what checkpoints and params_io hold)
    opt_state: Any
    rng: jax.Array           # raw uint32 key data; per-step keys are fold_in(rng, step)


def state_shardings(model_config, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """A TrainState-shaped pytree of NamedShardings (FSDP over `fsdp`, tensor parallel over `tensor`)."""
    from patch_training.model import abstract_params
    with sharding_lib.mesh_context(mesh):
        boxed = abstract_params(model_config)
    params_sh = sharding_lib.param_shardings(boxed, mesh)
    unboxed = jax.tree_util.tree_map(
        lambda x: x.unbox() if hasattr(x, "unbox") else x, boxed,
        is_leaf=lambda x: hasattr(x, "unbox"))
    abstract_opt = jax.eval_shape(tx.init, unboxed)
    opt_sh = sharding_lib.opt_state_shardings(tx, abstract_opt, params_sh, mesh)
    rep = sharding_lib.replicated(mesh)
    return TrainState(step=rep, params=params_sh, opt_state=opt_sh, rng=rep)


def create_train_state(model_config, tx: optax.GradientTransformation, mesh: Mesh, seed: int,
                       shardings: TrainState | None = None) -> TrainState:
    """Initialise params from `seed` and the optimizer state directly into their shardings."""
    from patch_training.model import init_params
    shardings = shardings or state_shardings(model_config, tx, mesh)

    def init(seed_arr):
        root = jax.random.PRNGKey(seed_arr)
        init_key, train_key = jax.random.split(root)
        params = init_params(model_config, init_key)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), rng=train_key)

    with sharding_lib.mesh_context(mesh):
        return jax.jit(init, out_shardings=shardings)(jnp.asarray(seed, jnp.uint32))


def abstract_train_state(model_config, tx: optax.GradientTransformation,
                         shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying shardings: the restore target for checkpoints."""
    from patch_training.model import init_params

    def init():
        params = init_params(model_config, jax.random.PRNGKey(0))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), rng=jax.random.PRNGKey(0))

    shapes = jax.eval_shape(init)
    return jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
