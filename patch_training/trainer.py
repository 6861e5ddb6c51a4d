"""The training loop: sharded jit step, logging/MFU, periodic eval, checkpoints, resume, preemption, open hooks.

Data is a pure function of the step (`dataset.host_batch(step, ...)`), params/optimizer/RNG are
restored from the newest complete checkpoint, and `metrics.jsonl` is cut back to that step, so a
run killed at any point and restarted repeats the uninterrupted run bit for bit (CPU, same mesh).
`add_hook(fn, every=N)` (Levanter's) opens the loop to any periodic or end-of-stage work. The gin entry
that builds a run (MODEL_DIR, mesh, data) is `patch_training.training`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import gin
import jax
import numpy as np

from patch_training import mfu as mfu_lib
from patch_training.multihost import is_primary
from patch_training.atomic import write_json_atomic
from patch_training import partitioning as sharding_lib
from patch_training.errors import UserError
from patch_training.evaluation import evaluate
from patch_training.partitioning import describe, make_mesh
from patch_training.metrics import MetricsWriter, ProgressLine, read_jsonl, truncate_jsonl, METRICS_FILE
from patch_training.optimizer import OptimizerConfig
from patch_training.preemption import PreemptionWatcher
from patch_training.train_hooks import (  # noqa: F401  (TrainingDiverged: its public home was here)
    CheckpointSaver, HookInfo, LoopState, MetricsLogger, NanStop, OpenHook, PeriodicEval, PeriodicHook, PreemptionStop,
    TrainingDiverged)
from patch_training.train_state import TrainState, abstract_train_state, create_train_state
from patch_training.train_step import StepConfig, compile_train_step
from patch_training.checkpointing import CheckpointConfig, TrainCheckpointer
from patch_training.data.prefetch import PrefetchingBatches, with_prefetch


@gin.configurable(module="trainer")
@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    # Shape and length of the run. A pretraining config binds them (to %gin.REQUIRED macros); a
    # two-stage run leaves them unset and derives them per stage from its plan.
    num_steps: int | None = None
    batch_size: int | None = None           # global rows per optimizer step
    sequence_length: int | None = None      # tokens per row (K·T in a patch stage)
    patch_size: int = 1                     # K; 1 = token level
    num_microbatches: int = 1               # gradient accumulation
    seed: int = 0                           # every random stream derives from this
    log_every: int = 10
    eval_every: int = 0                     # 0: evaluate only at the end
    eval_batches: int | None = None         # cap on one validation pass (None: the whole split)
    eval_batch_size: int | None = None      # default: batch_size
    plot: bool = True
    onednn_on_cpu: str = "auto"             # train/eval steps on CPU: "auto" (bf16 only), "on", "off"

    def validate(self) -> None:
        for name in ("num_steps", "batch_size", "sequence_length", "patch_size", "num_microbatches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise UserError(f"TrainerConfig.{name} must be a positive integer, got {value!r}")
        if self.sequence_length % self.patch_size:
            raise UserError(f"TrainerConfig: patch_size={self.patch_size} does not divide "
                            f"sequence_length={self.sequence_length}")
        if self.onednn_on_cpu not in ("auto", "on", "off"):
            raise UserError(f"TrainerConfig.onednn_on_cpu={self.onednn_on_cpu!r}: expected 'auto', 'on' or 'off'")


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    status: str                      # "completed" | "preempted"
    last_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None          # the first (primary) validation set
    state: TrainState | None = None
    eval_by_set: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    eval_seconds: float = 0.0        # time spent in validation passes during this `run()`
    hook_results: dict[str, Any] = dataclasses.field(default_factory=dict)  # named end-of-stage hooks' values


def _compatibility_meta(model_config, cfg: TrainerConfig, vocab_spec: dict | None) -> dict:
    """What a checkpoint must agree on to be resumed by this config."""
    return {"model_config": model_config.to_dict(), "patch_size": cfg.patch_size,
            "sequence_length": cfg.sequence_length, "batch_size": cfg.batch_size, "vocab": vocab_spec}


class Trainer:
    """Owns one run directory. `run()` trains to `num_steps` (resuming if possible)."""

    def __init__(self, run_dir: str | os.PathLike, model_config, cfg: TrainerConfig, train_data: Any,
                 eval_data: Any | None = None, optimizer_config: OptimizerConfig | None = None,
                 vocab_spec: dict | None = None, mesh=None, console: bool = True,
                 initial_params: Any | None = None, checkpoint_config: CheckpointConfig | None = None):
        cfg.validate()
        self.run_dir = Path(run_dir)
        self.model_config = model_config
        self.cfg = cfg
        # The row store's reads go ahead in a thread (a pure function of the step, so nothing changes).
        self.train_data = with_prefetch(train_data)
        # One validation set (metrics under `eval/`) or several by name (`eval/<name>/`), e.g.
        # {"code": ..., "wikitext": ...}; the first one is the run's primary validation metric.
        if isinstance(eval_data, Mapping):
            self.eval_sets = {str(k): v for k, v in eval_data.items() if v is not None}
        else:
            self.eval_sets = {"": eval_data} if eval_data is not None else {}
        self.eval_data = next(iter(self.eval_sets.values()), None)
        self.optimizer_config = optimizer_config or OptimizerConfig()
        self.vocab_spec = vocab_spec
        self.mesh = mesh if mesh is not None else make_mesh()
        self.console = console and is_primary()
        # Params to start from when the run has no checkpoint (e.g. stage-1 params for a fresh stage 2, or a
        # pretrained model to fine-tune); a zero-argument callable is only called then, so a resumed run
        # never reads them.
        self.initial_params = initial_params
        self.hooks: list[OpenHook] = []
        self.eval_seconds = 0.0
        self.checkpoint_config = checkpoint_config or CheckpointConfig()
        sharding_lib.check_batch_divisible(cfg.batch_size, self.mesh, cfg.num_microbatches)
        if eval_data is not None:
            sharding_lib.check_batch_divisible(cfg.eval_batch_size or cfg.batch_size, self.mesh)

    def add_hook(self, fn: Callable[[HookInfo], Any], *, every: int = 0, at_start: bool = False,
                 at_end: bool = True, name: str | None = None) -> None:
        """Call `fn(HookInfo)` after every `every`-th step (0: never), once before step 1 of a fresh run
        (`at_start`), and once when the stage completes, after its final validation (`at_end`; with a
        `name`, what it returns is kept in `TrainResult.hook_results[name]`)."""
        self.hooks.append(OpenHook(fn, every, at_start, at_end, name))

    # -- set-up ---------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.console:
            print(text, file=sys.stderr, flush=True)

    def _write_run_files(self) -> None:
        if not is_primary():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "model_config.json", self.model_config.to_dict())
        if self.vocab_spec is not None:
            from patch_training.data.vocab import write_vocab_json
            write_vocab_json(self.run_dir, self.vocab_spec)

    def _build(self):
        cfg = self.cfg
        steps = compile_train_step(self.model_config, self.optimizer_config, cfg.num_steps,
                                   StepConfig(cfg.patch_size, cfg.num_microbatches, cfg.onednn_on_cpu),
                                   self.mesh)
        self.tx, self.schedule, self.shardings = steps.tx, steps.schedule, steps.shardings
        self.train_step, self.eval_step = steps.train_step, steps.eval_step

    def _state_from(self, restored) -> TrainState:
        rep = sharding_lib.replicated(self.mesh)
        if restored.rng is None:
            raise UserError(f"checkpoint step {restored.step} in {self.run_dir} has no RNG state; "
                            "it was not written by the trainer")
        if (restored.data_state or {}).get("next_step", restored.step) != restored.step:
            raise UserError(f"checkpoint step {restored.step}: saved data position "
                            f"{restored.data_state} does not match its step")
        window = (restored.data_state or {}).get("loss_window") or [0.0, 0]
        self._restored_loss_window = (float(window[0]), int(window[1]))
        # Checkpoints written before the metrics were saved have none: the result then has none either.
        self._restored_last_metrics = {k: float(v) for k, v in
                                       ((restored.data_state or {}).get("last_metrics") or {}).items()}
        return TrainState(step=jax.device_put(np.asarray(restored.step, np.int32), rep),
                          params=restored.params, opt_state=restored.opt_state,
                          rng=jax.device_put(np.asarray(restored.rng), rep))

    def _fresh_state(self, initial: Any) -> TrainState:
        state = create_train_state(self.model_config, self.tx, self.mesh, self.cfg.seed, self.shardings)
        if initial is not None:
            params = jax.tree_util.tree_map(
                lambda p, s: jax.device_put(np.asarray(p, dtype=np.float32), s), initial, self.shardings.params)
            state = state.replace(params=params)
        return state

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        self._write_run_files()
        self._build()
        meta = _compatibility_meta(self.model_config, cfg, self.vocab_spec)
        ckpt = TrainCheckpointer(self.run_dir, self.checkpoint_config, fingerprint=meta)
        try:
            with PreemptionWatcher() as watcher:
                return self._run(ckpt, watcher)
        finally:
            ckpt.close()

    def _run(self, ckpt: TrainCheckpointer, watcher: PreemptionWatcher) -> TrainResult:
        with sharding_lib.mesh_context(self.mesh):
            abstract = abstract_train_state(self.model_config, self.tx, self.shardings)
            restored = ckpt.restore_latest(abstract.params, abstract.opt_state)
        # A loader of initial params places them itself, outside this mesh context: restoring boxed Linen
        # params under it would put logical-axis constraints on concrete arrays.
        initial = None
        if restored is None:
            initial = self.initial_params() if callable(self.initial_params) else self.initial_params
        with sharding_lib.mesh_context(self.mesh):
            if restored is None:
                state = self._fresh_state(initial)
                start = 0
            else:
                start = restored.step
                state = self._state_from(restored)
                self._say(f"resumed from checkpoint step {start} in {ckpt.directory}")
        if is_primary():
            truncate_jsonl(self.run_dir / METRICS_FILE, start)
        writer = MetricsWriter(self.run_dir, enabled=is_primary())
        try:
            return self._train_loop(ckpt, watcher, writer, state, start, restored is not None)
        finally:
            writer.close()
            if isinstance(self.train_data, PrefetchingBatches):
                self.train_data.close()

    def _train_loop(self, ckpt: TrainCheckpointer, watcher: PreemptionWatcher, writer: MetricsWriter,
                    state: TrainState, start: int, resumed: bool) -> TrainResult:
        """Step until `num_steps`; logging, the NaN stop, checkpoints, evaluation and preemption are hooks."""
        cfg = self.cfg
        loop = LoopState(step=start, state=state, last_good=start if resumed else None,
                         last_metrics=dict(self._restored_last_metrics) if resumed else {})
        logger, metric_hooks, preemption, state_hooks = self._hooks(ckpt, watcher, writer, resumed)
        pending: list[tuple[int, Any]] = []

        def info(loop: LoopState, event: str) -> HookInfo:
            return HookInfo(self, loop.step, loop.state, event, loop.eval_by_set)

        state_hooks += [PeriodicHook(h, cfg.num_steps, info) for h in self.hooks if h.every]

        def drain() -> None:
            for done_step, metrics in pending:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                for hook in metric_hooks:
                    hook.on_metrics(loop, done_step, values)
            pending.clear()

        with sharding_lib.mesh_context(self.mesh):
            if not resumed:
                for hook in (h for h in self.hooks if h.at_start):
                    hook.fn(info(loop, "start"))
            while loop.step < cfg.num_steps:
                host = self.train_data.host_batch(loop.step, cfg.batch_size, jax.process_index(),
                                                  jax.process_count())
                loop.state, metrics = self.train_step(loop.state, sharding_lib.global_batch(host, self.mesh))
                loop.step += 1
                logger.step_dispatched()
                if loop.step == start + 1:
                    jax.block_until_ready(metrics)  # the first step includes compilation: time from here
                    logger.restart_timer()
                drain()  # the previous step's metrics, read while this one runs
                pending.append((loop.step, metrics))
                loop.stop = preemption.due(loop)
                due = [hook for hook in state_hooks if hook.due(loop)]
                if due or logger.wants(loop.step):
                    drain()  # never save or report a state whose loss was not checked
                for hook in due:
                    hook.run(loop)
                if due:
                    jax.block_until_ready(loop.state.step)  # keep saving/evaluating out of the step time
                    logger.restart_timer()
                if loop.stop:
                    preemption.run(loop)
                    break
            drain()
            ckpt.wait()
            if loop.status == "completed" and self.eval_data is not None:
                loop.eval_by_set = self._evaluate(loop.state, writer, loop.step)
            if loop.status == "completed":
                for hook in (h for h in self.hooks if h.at_end):
                    value = hook.fn(info(loop, "end"))
                    if hook.name:
                        loop.hook_results[hook.name] = value
        if loop.status == "completed" and cfg.plot and is_primary():
            writer.flush()
            plot_loss_curve(self.run_dir)
        eval_metrics = next(iter(loop.eval_by_set.values()), None)
        return TrainResult(self.run_dir, loop.step, loop.status, loop.last_metrics, eval_metrics, loop.state,
                           loop.eval_by_set, self.eval_seconds, loop.hook_results)

    def _hooks(self, ckpt: TrainCheckpointer, watcher: PreemptionWatcher, writer: MetricsWriter, resumed: bool):
        """(logger, metric hooks, preemption hook, state hooks) for one run of the loop."""
        cfg = self.cfg
        tokens_per_step = cfg.batch_size * cfg.sequence_length
        flops_per_step = mfu_lib.training_flops_per_step(
            self.model_config, cfg.sequence_length // cfg.patch_size, cfg.batch_size)
        peak, peak_source = mfu_lib.device_peak_tflops(self.model_config.dtype)
        self._say(f"mesh {describe(self.mesh)}; {tokens_per_step} tokens/step; "
                  f"{flops_per_step / 1e9:.2f} GFLOP/step; peak {peak:.2f} TFLOP/s/device ({peak_source})")
        logger = MetricsLogger(writer, ProgressLine(cfg.num_steps, enabled=self.console), log_every=cfg.log_every,
                               num_steps=cfg.num_steps, tokens_per_step=tokens_per_step,
                               flops_per_step=flops_per_step, peak_tflops=peak, num_devices=self.mesh.devices.size,
                               window=self._restored_loss_window if resumed else (0.0, 0))
        state_hooks = [CheckpointSaver(ckpt, cfg.num_steps, logger)]
        if self.eval_data is not None:
            state_hooks.append(PeriodicEval(lambda st, step: self._evaluate(st, writer, step), cfg.eval_every,
                                            cfg.num_steps))
        return (logger, [NanStop(writer, ckpt.directory), logger],
                PreemptionStop(watcher, cfg.num_steps, self._say), state_hooks)

    def evaluate(self, params: Any, *, log: bool = True) -> dict[str, dict[str, float]]:
        """One pass of this run's eval step over every validation set (for hooks too, e.g. the params a
        fine-tuning run starts from); returns {set name: {"loss", "perplexity", "tokens"}}. Needs `run()`."""
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        with sharding_lib.mesh_context(self.mesh):
            return {name: evaluate(self.eval_step, params, data, batch_size=bs, limit=self.cfg.eval_batches,
                                   mesh=self.mesh, log=self._say if log else None)
                    for name, data in self.eval_sets.items()}

    def _evaluate(self, state: TrainState, writer: MetricsWriter, step: int) -> dict[str, dict[str, float]]:
        """`evaluate` at a training step, written to the metrics and the console."""
        t0 = time.perf_counter()
        results = self.evaluate(state.params)
        for name, result in results.items():
            prefix = f"eval/{name}/" if name else "eval/"
            writer.write(step, {"loss": result["loss"], "perplexity": result["perplexity"],
                                "tokens": result["tokens"]}, prefix=prefix)
            label = f"eval {name}" if name else "eval"
            self._say(f"{label} at step {step}: loss {result['loss']:.4f} perplexity "
                      f"{result['perplexity']:.3f} ({result['tokens']:.0f} tokens)")
        self.eval_seconds += time.perf_counter() - t0
        return results


def plot_loss_curve(run_dir: str | os.PathLike, name: str = "loss_curve.png") -> Path | None:
    """Training (and validation) loss against step, from `metrics.jsonl`."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = read_jsonl(path)
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
    eval_keys = sorted({k for r in rows for k in r if k.startswith("eval/") and k.endswith("loss")})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    for key in eval_keys:
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        set_name = key[len("eval/"):-len("loss")].strip("/")
        ax.plot(*zip(*points), "o-", lw=1.5,
                label=f"validation loss ({set_name})" if set_name else "validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / name
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
