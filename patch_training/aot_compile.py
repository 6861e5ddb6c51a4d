"""Ahead-of-time compilation of the real sharded train step for a TPU slice, on a CPU-only machine.

The engine of `python -m patch_training.aot --gin_file=<experiment> [--gin_file=...]
[--topology=v5p-128]` (entry point: `patch_training.main.aot`): it builds the train step exactly as the trainer does (same mesh config, logical-axis shardings,
optimizer, donation) for every stage of the experiment (both stages of a two-stage patch run, the
one stage of a plain `train` run), lowers it against abstract inputs placed on compile-only TPU
devices from libtpu, and compiles it with the TPU compiler. Nothing is allocated or run.

Per stage it reports XLA's memory plan per chip (arguments + outputs + temporaries − aliased,
i.e. donated, buffers) against the chip's HBM, and two FLOP counts for one optimizer step on the
whole slice: ours (`mfu.training_flops_per_step`, MaxText convention: 3 × forward matmuls,
causal attention halved) and XLA's own. XLA's cost analysis is per device and counts the body of
a loop once, so the scanned layers (and a microbatch scan) hide most of the work; XLA's number is
therefore taken from *unrolled* compiles (no layer scan, no microbatch scan, no remat) of the same
step on the same mesh at depth 1 and 2, extrapolated linearly to the real depth (unrolled, the
count is exactly affine in the number of layers) and multiplied by the chips. `--flops=exact`
compiles the full unrolled depth instead. XLA computes the whole attention score matrix and counts
elementwise work, so it is compared with the analytic count without the causal halving
(`analytic_flops_full_attention`); the two agree to a few percent, which validates the MFU formula.

The last stdout line is one JSON object; exit status 1 when a stage does not fit, 2 on bad input.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Any, Sequence

from patch_training.errors import UserError
from patch_training.tpu_topologies import TopologySpec, parse_topology, topology_devices

log = logging.getLogger(__name__)

POD_SLICE_MACRO = "POD_SLICE"   # experiments in configs/experiments/pod/ name their slice with it
FLOPS_MODES = ("extrapolate", "exact", "none")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One compiled step: what the trainer would run for this stage."""
    name: str
    patch_size: int          # K (1: token level)
    batch_size: int          # global rows per optimizer step
    sequence_length: int     # tokens per row: K·T in a patch stage, T at token level
    num_microbatches: int
    num_steps: int           # only shapes the LR schedule

    @property
    def network_length(self) -> int:
        return self.sequence_length // self.patch_size


# -- glue to the engine: every patch_training function this tool relies on is called here -------
# (When the trainer's mesh/sharding/step modules are merged, only this block needs new names.)

def _engine_mesh(devices: Sequence[Any]):
    """The trainer's mesh (gin `partitioning.mesh_shape`, axes data/fsdp/tensor) over the slice's devices."""
    import jax
    from jax.sharding import AxisType
    from patch_training.partitioning import MESH_AXES, mesh_shape, resolve_axis_sizes
    sizes = resolve_axis_sizes(mesh_shape(), len(devices))
    # jax.make_mesh orders the devices along the physical torus, as on the real slice.
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def _engine_lower(model_config, optimizer_config, stage: StageSpec, mesh):
    """Lower the trainer's jitted, sharded, donating train step against abstract inputs.

    Returns (lowered, (abstract state, abstract batch)); the abstract leaves carry their shardings.
    """
    import jax
    import jax.numpy as jnp
    from patch_training import partitioning as sharding_lib
    from patch_training.model import Transformer
    from patch_training.optimizer import make_optimizer
    from patch_training.train_state import abstract_train_state, state_shardings
    from patch_training.train_step import StepConfig, make_train_step

    sharding_lib.check_batch_divisible(stage.batch_size, mesh, stage.num_microbatches)
    tx, schedule = make_optimizer(optimizer_config, stage.num_steps)
    shardings = state_shardings(model_config, tx, mesh)
    step_fn = make_train_step(Transformer(model_config), tx, schedule,
                              StepConfig(stage.patch_size, stage.num_microbatches))
    batch_sh = sharding_lib.batch_sharding(mesh)
    jitted = jax.jit(step_fn, in_shardings=(shardings, batch_sh),
                     out_shardings=(shardings, sharding_lib.replicated(mesh)), donate_argnums=0)
    shape = (stage.batch_size, stage.sequence_length)
    batch = {name: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sh)
             for name in ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
                          "decoder_positions")}
    batch["decoder_loss_weights"] = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sh)
    with sharding_lib.mesh_context(mesh):
        state = abstract_train_state(model_config, tx, shardings)
        return jitted.lower(state, batch), (state, batch)


def _engine_analytic_flops(model_config, stage: StageSpec, causal_halved: bool = True) -> float:
    """Our MFU FLOPs for one optimizer step (MaxText convention; patches as the length)."""
    from patch_training import mfu
    from patch_training.model import forward_flops_per_token
    if causal_halved:
        return mfu.training_flops_per_step(model_config, stage.network_length, stage.batch_size)
    per_position = forward_flops_per_token(model_config, stage.network_length, causal_halved=False)
    return 3.0 * per_position * stage.network_length * stage.batch_size


def _engine_configs() -> tuple[Any, Any, list[StageSpec]]:
    """(model config, optimizer config, stages) from the parsed gin config, as the CLIs build them."""
    import gin
    from patch_training.gin_utils import call_configured
    from patch_training.model import ModelConfig
    from patch_training.optimizer import OptimizerConfig

    def bound(name: str) -> bool:
        try:
            gin.query_parameter(name)
            return True
        except ValueError:
            return False

    if bound("two_stage_training.run_experiment.two_stage_config"):
        from patch_training.trainer import TrainerConfig
        from patch_training.two_stage_training import TwoStageConfig, stage_trainer_config
        cfg = call_configured(TwoStageConfig)
        base = call_configured(TrainerConfig)
        # Each stage's trainer config derives from the gin-bound TrainerConfig, as in a real run.
        stages = [StageSpec(p.name, p.patch_size, p.batch_size, p.sequence_length,
                            stage_trainer_config(base, cfg, p).num_microbatches, p.num_steps)
                  for p in cfg.plan()]
    elif bound("training.run_training.trainer_config"):
        from patch_training.trainer import TrainerConfig
        cfg = call_configured(TrainerConfig)
        cfg.validate()
        name = "train" if cfg.patch_size == 1 else f"train_patch_k{cfg.patch_size}"
        stages = [StageSpec(name, cfg.patch_size, cfg.batch_size, cfg.sequence_length, cfg.num_microbatches,
                            cfg.num_steps)]
    else:
        raise UserError("the gin files configure neither two_stage_training.run_experiment nor training.run_training; "
                        "pass an experiment (e.g. --gin_file=configs/experiments/pod/370m_patch_v5p-128.gin)")
    return call_configured(ModelConfig), call_configured(OptimizerConfig), stages


# -- compiling and measuring ---------------------------------------------------------------------

_OOM = re.compile(r"RESOURCE_EXHAUSTED|[Oo]ut of memory|Ran out of memory")
# XLA's TPU message: "... memory required for HLO temporaries (198.34G) exceeds available HBM (95.73G)".
_TEMPS = re.compile(r"HLO temporaries \(([\d.]+)([KMGT]?)\)")
_AVAILABLE = re.compile(r"available HBM \(([\d.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}   # XLA prints binary units


def _bytes_in(pattern: re.Pattern, text: str) -> int | None:
    m = pattern.search(text)
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def compile_uncached(lowered):
    """`lowered.compile()` with JAX's persistent compilation cache off for this one compile.

    libtpu's compile-only executables are written to a configured cache (~8 MB each at 370M) but cannot be
    read back ("PjRtCompiler must be constructed with a Client"): every later run warned and compiled anyway.
    """
    import jax
    from jax._src import compilation_cache   # jax memoizes whether the cache is in use; reset re-reads it

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        return lowered.compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()


def argument_bytes_per_device(abstract_args: Any) -> int:
    """Bytes of one device's shards of the (abstract, sharded) step inputs."""
    import jax
    import numpy as np
    total = 0
    for leaf in jax.tree_util.tree_leaves(abstract_args):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def _flat(text: str, limit: int = 240) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[:limit] + " ..."


def memory_bytes_per_chip(compiled) -> dict[str, int]:
    """XLA's buffer plan for one device: arguments + outputs + temporaries, less donated (aliased) buffers."""
    m = compiled.memory_analysis()
    parts = {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
             "temp_bytes": int(m.temp_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes),
             "generated_code_bytes": int(m.generated_code_size_in_bytes)}
    parts["hbm_bytes_per_chip"] = (parts["argument_bytes"] + parts["output_bytes"] + parts["temp_bytes"]
                                   - parts["alias_bytes"])
    return parts


def xla_flops_per_device(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):   # older jax returned one dict per computation
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def _counting_config(model_config, num_layers: int):
    # Unrolled layers and no rematerialisation: XLA then counts every layer once, as the formula does.
    return dataclasses.replace(model_config, num_layers=num_layers, scan_layers=False, remat_policy="none")


def xla_flops_whole_slice(model_config, optimizer_config, stage: StageSpec, mesh, mode: str) -> dict:
    """XLA's FLOPs for one step on the whole slice, from unrolled compiles (see the module docstring).

    `extrapolate`: compiles at depth 1 and 2 with one row per data-parallel shard (small enough to
    fit any slice), extrapolated to the real depth (exact: unrolled, the count is affine in the
    layers) and to the real batch (the rows' work is linear in rows; the optimizer's per-parameter
    work, about 1e-6 of a step, is scaled with it). `exact`: the full depth and batch, unrolled.
    """
    chips = mesh.devices.size
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    depth = model_config.num_layers

    def per_device(layers: int, rows: int) -> float:
        counting = dataclasses.replace(stage, num_microbatches=1, batch_size=rows)
        lowered, _ = _engine_lower(_counting_config(model_config, layers), optimizer_config, counting, mesh)
        return xla_flops_per_device(compile_uncached(lowered))

    if mode == "exact":
        return {"xla_flops": per_device(depth, stage.batch_size) * chips,
                "xla_flops_method": f"unrolled compile of all {depth} layers at the full batch, x {chips} chips"}
    f1 = per_device(1, dp)
    f2 = per_device(2, dp) if depth > 1 else f1
    per_dp_rows = f1 + (depth - 1) * (f2 - f1)
    return {"xla_flops": per_dp_rows * chips * stage.batch_size / dp,
            "xla_flops_method": f"unrolled compiles of 1 and 2 layers at {dp} rows (1 per data shard), "
                                f"extrapolated to {depth} layers and {stage.batch_size} rows, x {chips} chips"}


def compile_stage(model_config, optimizer_config, stage: StageSpec, mesh, topology: TopologySpec,
                  flops_mode: str = "extrapolate") -> dict:
    """Compile one stage's real step; its memory plan, both FLOP counts and the compile time."""
    capacity = topology.hbm_capacity_bytes
    row: dict[str, Any] = {"stage": stage.name, "patch_size": stage.patch_size, "batch_size": stage.batch_size,
                           "sequence_length": stage.sequence_length, "num_microbatches": stage.num_microbatches,
                           "hbm_capacity_bytes": capacity}
    t0 = time.perf_counter()
    lowered, abstract_args = _engine_lower(model_config, optimizer_config, stage, mesh)
    try:
        compiled = compile_uncached(lowered)
    except Exception as e:  # the TPU compiler refuses a program whose buffers cannot fit in HBM
        if not _OOM.search(str(e)):
            raise
        # No memory plan comes back; its message gives the temporaries. Outputs alias the donated
        # state, so arguments + temporaries is the same sum as for a program that compiles.
        temps = _bytes_in(_TEMPS, str(e))
        args = argument_bytes_per_device(abstract_args)
        row.update(hbm_bytes_per_chip=None if temps is None else args + temps, fits=False,
                   argument_bytes=args, temp_bytes=temps,
                   xla_hbm_available_bytes=_bytes_in(_AVAILABLE, str(e)), compile_error=_flat(e))
        compiled = None
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    if compiled is not None:
        row.update(memory_bytes_per_chip(compiled))
        row["fits"] = row["hbm_bytes_per_chip"] <= capacity
        row["xla_flops_scanned_per_device"] = xla_flops_per_device(compiled)
    analytic = _engine_analytic_flops(model_config, stage)
    row["analytic_flops"] = analytic
    row["analytic_flops_full_attention"] = _engine_analytic_flops(model_config, stage, causal_halved=False)
    if flops_mode != "none":
        t1 = time.perf_counter()
        row.update(xla_flops_whole_slice(model_config, optimizer_config, stage, mesh, flops_mode))
        row["xla_flops_s"] = round(time.perf_counter() - t1, 2)
        row["xla_over_analytic_full_attention"] = row["xla_flops"] / row["analytic_flops_full_attention"]
    else:
        row["xla_flops"] = None
    return row


def compile_experiment(topology: TopologySpec, flops_mode: str = "extrapolate", say=lambda _t: None) -> dict:
    """Compile every stage of the parsed gin experiment for `topology`; the report object."""
    model_config, optimizer_config, stages = _engine_configs()
    devices = topology_devices(topology)
    mesh = _engine_mesh(devices)
    say(f"{topology.name} ({topology.libtpu_name}): {topology.chips} chips, mesh "
        f"{dict(mesh.shape)}, {topology.hbm_capacity_bytes / 2**30:.0f} GiB HBM per chip")
    rows = []
    for i, stage in enumerate(stages, 1):
        say(f"[{i}/{len(stages)}] compiling {stage.name}: {stage.batch_size} rows x {stage.sequence_length} "
            f"tokens (K={stage.patch_size}, {stage.num_microbatches} microbatch(es))")
        row = compile_stage(model_config, optimizer_config, stage, mesh, topology, flops_mode)
        rows.append(row)
        hbm = row.get("hbm_bytes_per_chip")
        say(f"[{i}/{len(stages)}] {stage.name}: "
            f"{'?' if hbm is None else f'{hbm / 2**30:.2f}'} GiB of {row['hbm_capacity_bytes'] / 2**30:.0f} GiB "
            f"per chip ({'fits' if row['fits'] else 'DOES NOT FIT'}), compiled in {row['compile_s']:.1f} s"
            + (f"; XLA/analytic(full attention) FLOPs {row['xla_over_analytic_full_attention']:.3f}"
               if row.get("xla_flops") else ""))
    return {"topology": topology.name, "libtpu_topology": topology.libtpu_name, "chips": topology.chips,
            "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape),
            "model": {"num_layers": model_config.num_layers, "hidden_size": model_config.hidden_size,
                      "remat_policy": model_config.remat_policy, "dtype": model_config.dtype},
            "stages": rows}
