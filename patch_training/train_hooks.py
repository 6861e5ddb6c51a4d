"""The periodic work around the train step, as hooks (Levanter's `TrainerHooks`).

The trainer's loop only steps; everything that happens every N steps is a hook:

- metric hooks see each finished step's metrics on the host (`on_metrics`): the NaN/inf stop and
  the logger (train loss as the mean over the log window, tokens/s, MFU, progress line);
- state hooks say whether they are due after a step (`due`) and then act on the state (`run`):
  preemption (stop after saving), checkpointing, periodic evaluation;
- open hooks (`Trainer.add_hook(fn, every=N)`, as in Levanter): any callable of a `HookInfo`, run
  every N steps, at the end of a completed stage, and/or once before the first step of a fresh run.

The loop keeps one step in flight: it reads step s-1's metrics while step s runs, and drains every
pending metric before any state hook runs, so nothing is saved or reported whose loss was not
checked.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from patch_training import mfu as mfu_lib
from patch_training.errors import UserError
from patch_training.metrics import MetricsWriter, ProgressLine


class TrainingDiverged(UserError):
    """The loss became NaN or inf; the run stopped without saving the bad state."""


@dataclasses.dataclass
class LoopState:
    """What the hooks share with the loop."""
    step: int
    state: Any                                    # TrainState after `step` updates
    last_good: int | None                         # newest step saved by this run (or resumed from)
    stop: bool = False                            # set by a hook: leave the loop after this step
    status: str = "completed"
    last_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    eval_by_set: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    hook_results: dict[str, Any] = dataclasses.field(default_factory=dict)   # named open hooks' end values


class MetricHook(Protocol):
    def on_metrics(self, loop: LoopState, step: int, values: dict[str, float]) -> None: ...


class StateHook(Protocol):
    def due(self, loop: LoopState) -> bool: ...
    def run(self, loop: LoopState) -> None: ...


class NanStop:
    """Stop the run at the first non-finite loss, naming the last good checkpoint."""

    def __init__(self, writer: MetricsWriter, checkpoint_dir: Path):
        self.writer, self.checkpoint_dir = writer, checkpoint_dir

    def on_metrics(self, loop: LoopState, step: int, values: dict[str, float]) -> None:
        if math.isfinite(values["loss"]):
            loop.last_metrics = values
            return
        self.writer.write(step, {"loss": values["loss"]})
        self.writer.flush()
        where = (f"the last good checkpoint is step {loop.last_good} in {self.checkpoint_dir}"
                 if loop.last_good is not None else "no checkpoint was saved yet")
        raise TrainingDiverged(f"loss is {values['loss']} at step {step}; stopping the run ({where}; "
                               f"nothing after it was saved)")


class MetricsLogger:
    """Every `log_every` steps (and the last): one metrics row and one progress line.

    The train loss logged is the mean over the steps since the previous log line (one step's loss
    is noise); the partial window travels in the checkpoint (`window`) so a resumed run logs the
    same means as an uninterrupted one. Timing starts after the first step (compilation).
    """

    def __init__(self, writer: MetricsWriter, progress: ProgressLine, *, log_every: int, num_steps: int,
                 tokens_per_step: int, flops_per_step: float, peak_tflops: float, num_devices: int,
                 window: tuple[float, int] = (0.0, 0)):
        self.writer, self.progress = writer, progress
        self.log_every, self.num_steps = log_every, num_steps
        self.tokens_per_step, self.flops_per_step = tokens_per_step, flops_per_step
        self.peak, self.num_devices = peak_tflops, num_devices
        self.window = [float(window[0]), int(window[1])]
        self.timer_start: float | None = None
        self.timed_steps = 0

    def wants(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.num_steps

    def step_dispatched(self) -> None:
        self.timed_steps += 1

    def restart_timer(self) -> None:
        """Start a new timing window (after compilation, evaluation or a checkpoint hand-off)."""
        self.timer_start, self.timed_steps = time.perf_counter(), 0

    def on_metrics(self, loop: LoopState, step: int, values: dict[str, float]) -> None:
        self.window[0] += values["loss"]
        self.window[1] += 1
        if not self.wants(step):
            return
        now = time.perf_counter()
        step_time = float("nan")
        if self.timer_start is not None and self.timed_steps:
            step_time = (now - self.timer_start) / self.timed_steps
        row = dict(values, loss=self.window[0] / self.window[1])
        self.window = [0.0, 0]
        extra = f"gnorm {values['grad_norm']:.3f}"
        if math.isfinite(step_time) and step_time > 0:
            # Timing needs a window of steps after compilation; the first log has none.
            row["tokens_per_s"] = self.tokens_per_step / step_time
            row["step_time_s"] = step_time
            row["tflops_per_s_per_device"] = self.flops_per_step / step_time / 1e12 / self.num_devices
            row[mfu_lib.MFU_METRIC] = mfu_lib.mfu(self.flops_per_step, step_time, self.peak, self.num_devices)
            extra += f" MFU {100 * row[mfu_lib.MFU_METRIC]:.1f}%"
        self.writer.write(step, row)
        self.progress.show(step, row["loss"], values["learning_rate"], row.get("tokens_per_s", 0.0),
                           row.get("step_time_s", 0.0), extra=extra)
        self.timer_start, self.timed_steps = now, 0


class PreemptionStop:
    """A SIGTERM (on any host) stops the run after this step, which the checkpoint hook then saves."""

    def __init__(self, watcher: Any, num_steps: int, say: Callable[[str], None]):
        self.watcher, self.num_steps, self.say = watcher, num_steps, say

    def due(self, loop: LoopState) -> bool:
        # Asked every step: on several hosts it is a collective all of them must join.
        return self.watcher.should_stop(loop.step) and loop.step < self.num_steps

    def run(self, loop: LoopState) -> None:
        loop.stop, loop.status = True, "preempted"
        self.say(f"preemption requested: saved step {loop.step}, exiting cleanly")


class CheckpointSaver:
    """Save at the policy's steps, at the last step and before a preemption stop."""

    def __init__(self, ckpt: Any, num_steps: int, logger: MetricsLogger):
        self.ckpt, self.num_steps, self.logger = ckpt, num_steps, logger

    def due(self, loop: LoopState) -> bool:
        return loop.step == self.num_steps or loop.stop or self.ckpt.should_save(loop.step)

    def run(self, loop: LoopState) -> None:
        s = loop.state
        # `last_metrics` too: a run resumed from its final checkpoint takes no step, yet its result
        # (e.g. the train loss in a stage's eval.json) must be the uninterrupted run's.
        self.ckpt.save(loop.step, s.params, s.opt_state, rng=s.rng,
                       data_state={"next_step": loop.step, "loss_window": list(self.logger.window),
                                   "last_metrics": dict(loop.last_metrics)}, force=True)
        loop.last_good = loop.step


class PeriodicEval:
    """Validation every `eval_every` steps (the final pass after the loop is the trainer's)."""

    def __init__(self, evaluate: Callable[[Any, int], dict], eval_every: int, num_steps: int):
        self.evaluate, self.eval_every, self.num_steps = evaluate, eval_every, num_steps

    def due(self, loop: LoopState) -> bool:
        return bool(self.eval_every) and loop.step % self.eval_every == 0 and loop.step != self.num_steps

    def run(self, loop: LoopState) -> None:
        loop.eval_by_set = self.evaluate(loop.state, loop.step)


@dataclasses.dataclass
class HookInfo:
    """What an open hook sees (Levanter's `StepInfo`). `state` is live: the next step donates its buffers,
    so a hook that keeps arrays copies them (`jax.device_get`)."""
    trainer: Any                                  # the Trainer: run_dir, model_config, vocab_spec, mesh, evaluate()
    step: int
    state: Any                                    # TrainState after `step` updates
    event: str                                    # "start" (fresh run, before step 1), "step" (every N), "end"
    eval_by_set: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # latest validation

    @property
    def params(self) -> Any:
        return self.state.params


@dataclasses.dataclass(frozen=True)
class OpenHook:
    """One `add_hook` registration. A hook runs on every host (it may take part in collectives, such as
    an evaluation); work only one host should do (writing files) checks `multihost.is_primary()`."""
    fn: Callable[[HookInfo], Any]
    every: int = 0                                # > 0: after every `every`-th step
    at_start: bool = False                        # once before step 1 of a run that starts fresh (no checkpoint)
    at_end: bool = True                           # once when the stage completes, after its final validation
    name: str | None = None                       # its end-of-stage return value lands in `hook_results[name]`

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise UserError(f"add_hook: expected a callable, got {type(self.fn).__name__}")
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 0:
            raise UserError(f"add_hook(every={self.every!r}): expected an integer >= 0")


class PeriodicHook:
    """An open hook as a state hook: due every N steps (the last step is the end hook's, when it has one)."""

    def __init__(self, hook: OpenHook, num_steps: int, info: Callable[[LoopState, str], HookInfo]):
        self.hook, self.num_steps, self.info = hook, num_steps, info

    def due(self, loop: LoopState) -> bool:
        every = self.hook.every
        return bool(every) and loop.step % every == 0 and not (self.hook.at_end and loop.step == self.num_steps)

    def run(self, loop: LoopState) -> None:
        self.hook.fn(self.info(loop, "step"))
