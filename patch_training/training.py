"""The one training entry: `train(model_dir=, model_config=, stages=, init_from=, hooks=)`.

Every kind of run comes through it:
- pre-training is one `Stage` (`training.run_training` builds it from the run file's data);
- two-stage patch-level training is a plan of two (`two_stage_training.TwoStagePlan`, from
  `two_stage_training.run_experiment`);
- fine-tuning is `init_from` (a pretrained checkpoint's params) plus one stage of prompt rows
  (`case2code_finetune.finetuning`, from `finetuning.run_finetune`).

What a run does around its stages happens here and nowhere else: the MODEL_DIR check, the mesh, the
check that every `--gin.` flag was read (after the plan built its data, i.e. after every gin-configured
call), the operative config written before and after training, and the closing summary line.
`hooks` (gin: `training.train.hooks`) join every stage's trainer (`Trainer.add_hook`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import gin

from patch_training import allocator
from patch_training import partitioning as sharding_lib
from patch_training.errors import UserError
from patch_training.gin_utils import check_all_bindings_used, write_operative_config
from patch_training.multihost import is_primary
from patch_training.optimizer import OptimizerConfig
from patch_training.train_hooks import OpenHook
from patch_training.trainer import Trainer, TrainerConfig, TrainResult

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Stage:
    """One trainer run of a plan."""
    trainer_config: TrainerConfig
    train_data: Any
    eval_data: Any = None            # a dataset, {name: dataset}, or None
    name: str = ""                   # its directory under the run dir ("": the run dir itself)
    initial_params: Any = None       # params (or a zero-argument callable) for a start without checkpoint


@dataclasses.dataclass
class Run:
    """What the entry hands a plan: where it writes, on which devices, the shared settings and the hooks."""
    run_dir: Path
    model_config: Any
    mesh: Any
    optimizer_config: OptimizerConfig
    checkpoint_config: Any = None
    vocab_spec: dict | None = None
    hooks: tuple = ()
    init_params: Callable[[], Any] | None = None     # `init_from`, loaded only by a stage that starts fresh

    def trainer(self, stage: Stage, *, console: bool = True) -> Trainer:
        """The stage's trainer, in its directory, with the run's hooks."""
        initial = stage.initial_params if stage.initial_params is not None else self.init_params
        trainer = Trainer(self.run_dir / stage.name if stage.name else self.run_dir, self.model_config,
                          stage.trainer_config, stage.train_data, stage.eval_data, self.optimizer_config,
                          vocab_spec=self.vocab_spec, mesh=self.mesh, console=console, initial_params=initial,
                          checkpoint_config=self.checkpoint_config)
        for hook in self.hooks:
            if isinstance(hook, OpenHook):
                trainer.hooks.append(hook)
            else:
                trainer.add_hook(hook)
        return trainer


class Plan(Protocol):
    """How a run lays out and chains its stages."""

    def prepare(self, run: Run) -> None:
        """Check what can be checked and build the data (every gin-configured call happens here)."""

    def execute(self, run: Run) -> Any:
        """Train; returns the plan's result."""

    def summary(self, result: Any) -> str:
        """The one line printed when the run ends."""


class Stages:
    """Stages trained in order, each in its own directory (pre-training and fine-tuning: one)."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        if not self.stages:
            raise UserError("train(): no stages to run")

    def prepare(self, run: Run) -> None:
        pass

    def execute(self, run: Run) -> list[TrainResult]:
        results = []
        for stage in self.stages:
            results.append(run.trainer(stage).run())
            if results[-1].status != "completed":
                break
        return results

    def summary(self, results: list[TrainResult]) -> str:
        return "; ".join(result_line(r) for r in results)


def result_line(result: TrainResult) -> str:
    line = f"{result.status} at step {result.final_step}; run dir {result.run_dir}"
    if result.eval_metrics:
        line += (f"; validation loss {result.eval_metrics['loss']:.4f}, "
                 f"perplexity {result.eval_metrics['perplexity']:.3f}")
    return line


def hook(fn: Callable, *, every: int = 0, at_start: bool = False, at_end: bool = True,
         name: str | None = None) -> OpenHook:
    """A hook with its schedule, for `train(hooks=[...])` (a bare callable runs at the end of each stage)."""
    return OpenHook(fn, every, at_start, at_end, name)


def vocab_spec_of(vocab: Any) -> dict | None:
    """What `vocab.json` records: a spec dict passes through, a vocabulary object is described."""
    if vocab is None:
        return None
    if isinstance(vocab, dict):
        return vocab
    from patch_training.data.vocab import spec_for
    return spec_for(vocab)


def params_loader(init_from: Any, model_config: Any, mesh: Any) -> Callable[[], Any] | None:
    """`init_from` as a zero-argument loader of params in the run's shardings: a params checkpoint, trainer
    run dir or HF directory (through `Checkpoint.open`, which checks names and shapes), or a callable of
    the mesh."""
    if init_from is None:
        return None
    if callable(init_from):
        return lambda: init_from(mesh)

    def load() -> Any:
        from patch_training.contract.checkpoint import Checkpoint
        from patch_training.model import abstract_params
        with sharding_lib.mesh_context(mesh):
            shardings = sharding_lib.param_shardings(abstract_params(model_config), mesh)
        return Checkpoint.open(init_from, shardings=shardings).params
    return load


@gin.configurable(module="training")
def train(*, model_dir: str | os.PathLike, model_config: Any, stages: Sequence[Stage] | Plan, init_from: Any = None,
          hooks: Sequence[Any] = (), vocab: Any = None, optimizer_config: OptimizerConfig | None = None,
          checkpoint_config: Any = None, mesh_shape: Sequence[int] | None = None) -> Any:
    """Train `stages` (a list of `Stage`, or a `Plan`) into `model_dir`, resuming what is there.

    init_from: where the first stage's params start when it has no checkpoint (params only: fresh
    optimizer and schedule); vocab: a vocabulary or its spec, written to the run dir as `vocab.json`.
    """
    if not model_dir:
        raise UserError("MODEL_DIR is empty: pass --gin.MODEL_DIR=\"'runs/<name>'\"")
    vocab_size = getattr(vocab, "vocab_size", None)
    if vocab_size is not None and model_config.vocab_size < vocab_size:
        raise UserError(f"ModelConfig.vocab_size={model_config.vocab_size} is smaller than the vocabulary's "
                        f"{vocab_size} tokens")
    plan = stages if hasattr(stages, "execute") else Stages(stages)
    mesh = sharding_lib.make_mesh(mesh_shape)
    run = Run(Path(model_dir), model_config, mesh, optimizer_config or OptimizerConfig(), checkpoint_config,
              vocab_spec_of(vocab), tuple(hooks), params_loader(init_from, model_config, mesh))
    plan.prepare(run)
    check_all_bindings_used()  # a --gin flag that nothing above read is a mistake, not a no-op
    if mesh.devices.flat[0].platform == "cpu" and (hint := allocator.cpu_training_hint()):
        log.info(hint)
    if is_primary():
        write_operative_config(run.run_dir)
    result = plan.execute(run)
    if is_primary():
        write_operative_config(run.run_dir)  # now complete: everything gin bound was used
        print(plan.summary(result), flush=True)
    return result


# -- the pre-training gin entry (run files bind `training.run_training.*`) ----------------------------
@gin.configurable(module="training")
def run_training(*, model_dir: str = gin.REQUIRED, model_config: Any = gin.REQUIRED,
                 train_data: Any = gin.REQUIRED, eval_data: Any = None, vocab: Any = None,
                 trainer_config: Any = None, optimizer_config: Any = None, checkpoint_config: Any = None,
                 mesh_shape: Sequence[int] | None = None) -> TrainResult:
    """Pre-training: one stage in `model_dir`."""
    stage = Stage(trainer_config or TrainerConfig(), train_data, eval_data)
    return train(model_dir=model_dir, model_config=model_config, stages=[stage], vocab=vocab,
                 optimizer_config=optimizer_config, checkpoint_config=checkpoint_config, mesh_shape=mesh_shape)[-1]
