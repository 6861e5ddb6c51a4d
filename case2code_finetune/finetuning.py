"""Fine-tuning run: a pretrained checkpoint's params, prompt-masked rows, the pre-training trainer.

A fine-tuning run is the same `Trainer` as pre-training (sharding, exact resume after SIGKILL,
metrics.jsonl, TensorBoard, loss plot), configured by the same `TrainerConfig`; what differs is
where the parameters start (`INIT_CHECKPOINT`, params only: fresh optimizer and schedule) and
the data (prompt/answer rows whose loss weights count answer tokens only, or a mixture).

Data factories are passed *uncalled* from gin (`@train/make_prompt_answer_dataset`, without
parentheses) and called here with the checkpoint's vocabulary, so the rows are always tokenized
the way the checkpoint was trained.

It is a plan for the one training entry (`patch_training.training.train`): `init_from` the checkpoint's
params, one stage of prompt rows. The run dir gets `finetune.json`: the init checkpoint, validation
answer-token loss before (a start hook on the trainer's own eval step) and after (the stage's final
validation), and Case2Code pass@1 when the run's hooks include `evals.case2code.finetune_hook` (bound
in `configs/runs/finetune.gin`: this package may not import the eval, so gin hands it to the entry).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import gin

from patch_training.contract.checkpoint import Checkpoint
from patch_training.errors import UserError
from patch_training.multihost import is_primary, say_primary as _say
from patch_training.trainer import TrainerConfig
from patch_training.training import Run, Stage, train

SUMMARY_FILE = "finetune.json"
# The name the pass@1 hook (evals.case2code.finetune_hook) reports under in `TrainResult.hook_results`.
PASS_AT_1_HOOK = "case2code_pass_at_1"


def _read_summary(run_dir: Path) -> dict:
    path = run_dir / SUMMARY_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _write_summary(run_dir: Path, summary: dict) -> None:
    if not is_primary():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, run_dir / SUMMARY_FILE)


def _open_init(path: str | None, *, model_overrides: Mapping[str, Any] | None = None,
               vocab: Any = None) -> tuple[Checkpoint, Any]:
    """(checkpoint, its seqio vocabulary) a fine-tuning run starts from: a trainer run dir or a params
    checkpoint, opened without its weights (a resumed run never needs them; `training.train` loads them
    through the same opener for a fresh start). Its config (numerics may be overridden) and vocabulary
    become the run's; a run config that names another vocabulary is refused."""
    if not path:
        raise UserError("INIT_CHECKPOINT is empty: pass --gin.INIT_CHECKPOINT=\"'runs/demo/stage2_token'\" "
                        "(a trainer run dir or a params checkpoint, e.g. from hf_convert import)")
    init = Checkpoint.open(path, params=False, hf=False, model_overrides=model_overrides, vocab=vocab)
    if init.vocab_spec is None:
        raise UserError(f"init checkpoint {init.path} has no vocab.json: fine-tuning must tokenize rows with the "
                        "checkpoint's own vocabulary")
    init_vocab = init.vocabulary
    if init.config.vocab_size < init_vocab.vocab_size:  # ids past the embedding table cannot be trained on
        raise UserError(f"init checkpoint {init.path}: model vocab_size {init.config.vocab_size} is smaller than "
                        f"its vocabulary's {init_vocab.vocab_size} tokens")
    return init, init_vocab


def _build(factory: Any, vocab, what: str):
    """Call an uncalled gin data factory with the checkpoint's vocabulary (a built dataset passes through)."""
    if factory is None:
        return None
    if isinstance(factory, Mapping):
        return {name: _build(f, vocab, f"{what} {name!r}") for name, f in factory.items()}
    if callable(factory) and not hasattr(factory, "host_batch"):
        return factory(vocab=vocab)
    if hasattr(factory, "host_batch"):
        return factory
    raise UserError(f"{what}: expected a dataset factory (gin '@scope/make_prompt_answer_dataset' without "
                    f"parentheses), got {type(factory).__name__}")


class FinetunePlan:
    """Fine-tuning as a plan for `training.train`: one stage of prompt rows (built with the checkpoint's
    vocabulary) that starts from the checkpoint's params, with `finetune.json` kept beside it."""

    def __init__(self, init: Checkpoint, train_data: Any, eval_data: Any, trainer_config: TrainerConfig,
                 eval_before: bool = True):
        self.init, self.train_factory, self.eval_factory = init, train_data, eval_data
        self.cfg, self.eval_before = trainer_config, eval_before

    def prepare(self, run: Run) -> None:
        cfg, init = self.cfg, self.init
        cfg.validate()
        if cfg.patch_size != 1:
            raise UserError("fine-tuning is token level: TrainerConfig.patch_size must be 1")
        if cfg.sequence_length > init.config.max_seq_len:
            raise UserError(f"TrainerConfig.sequence_length={cfg.sequence_length} exceeds the checkpoint's "
                            f"positional capacity max_seq_len={init.config.max_seq_len} (override it with "
                            "model_overrides if RoPE allows)")
        train = _build(self.train_factory, init.vocabulary, "train_data")
        if train is None:
            raise UserError("finetuning.run_finetune.train_data is not set")
        if train.sequence_length != cfg.sequence_length:
            raise UserError(f"train rows hold {train.sequence_length} tokens but "
                            f"TrainerConfig.sequence_length={cfg.sequence_length}")
        evals = _build(self.eval_factory, init.vocabulary, "eval_data")
        self.eval_sets = evals if isinstance(evals, Mapping) else ({"": evals} if evals is not None else {})
        self.summary_record = summary = _read_summary(run.run_dir)
        recorded = summary.get("init_checkpoint")
        if recorded and recorded != str(init.path):
            raise UserError(f"{run.run_dir} was fine-tuned from {recorded}, not {init.path}; use a new MODEL_DIR")
        summary.update({"init_checkpoint": str(init.path), "model_config": init.config.to_dict(),
                        "train_rows": train.num_rows, "train": repr(train)})
        self.stage = Stage(cfg, train, self.eval_sets or None)

    def _on_start(self, info) -> None:
        """Once before step 1 of a fresh run (the trainer decides by the shared checkpoint dir, so every host
        joins the same evaluation): the init params' validation loss, on the trainer's own eval step."""
        _say(f"fine-tuning from {self.init.path} (params only; fresh optimizer and schedule)")
        if not (self.eval_before and self.eval_sets):
            return
        before = info.trainer.evaluate(info.params, log=False)
        self.summary_record["before"] = {name or "validation": m for name, m in before.items()}
        for name, m in before.items():
            _say(f"validation{' ' + name if name else ''} answer-token loss before fine-tuning: "
                 f"{m['loss']:.4f} ({m['tokens']:.0f} tokens)")
        _write_summary(info.trainer.run_dir, self.summary_record)

    def execute(self, run: Run):
        summary = self.summary_record
        trainer = run.trainer(self.stage)
        trainer.add_hook(self._on_start, at_start=True, at_end=False)
        _write_summary(run.run_dir, summary)
        result = trainer.run()
        summary["status"] = result.status
        summary["final_step"] = result.final_step
        if result.status == "completed":
            if result.eval_by_set:
                summary["after"] = {name or "validation": m for name, m in result.eval_by_set.items()}
            summary["case2code_pass_at_1"] = (result.hook_results.get(PASS_AT_1_HOOK) or {"status": "not requested"}
                                              if is_primary() else None)
        _write_summary(run.run_dir, summary)
        return result, summary

    def summary(self, outcome) -> str:
        result, summary = outcome
        return summary_line(summary, result.run_dir)


@gin.configurable(module="finetuning")
def run_finetune(*, model_dir: str = gin.REQUIRED, init_checkpoint: str = gin.REQUIRED,
                 train_data: Any = gin.REQUIRED, eval_data: Any = None, trainer_config: Any = None,
                 optimizer_config: Any = None, checkpoint_config: Any = None,
                 mesh_shape: Sequence[int] | None = None, model_overrides: Mapping[str, Any] | None = None,
                 vocab: Any = None, eval_before: bool = True):
    """Fine-tune `init_checkpoint` into `model_dir` (resuming what is there); the gin entry `runs/finetune.gin`
    binds: `FinetunePlan` through `training.train`, from the checkpoint's params.

    train_data / eval_data: uncalled dataset factories (or a {name: factory} dict for eval_data).
    vocab: leave None (the checkpoint's); if set it must equal the checkpoint's.
    eval_before: measure the validation loss of the init params once, before step 1.
    """
    init, _ = _open_init(init_checkpoint, model_overrides=model_overrides, vocab=vocab)
    plan = FinetunePlan(init, train_data, eval_data, trainer_config or TrainerConfig(), eval_before)
    return train(model_dir=model_dir, model_config=init.config, stages=plan, init_from=init.path,
                 vocab=init.vocab_spec, optimizer_config=optimizer_config, checkpoint_config=checkpoint_config,
                 mesh_shape=mesh_shape)


def summary_line(summary: dict, run_dir: Path) -> str:
    parts = [f"{summary.get('status')} at step {summary.get('final_step')}; run dir {run_dir}"]
    before, after = summary.get("before") or {}, summary.get("after") or {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}).get("loss"), after.get(name, {}).get("loss")
        label = f"{name} " if name == "validation" else f"validation {name} "
        shown = " -> ".join(f"{x:.4f}" for x in (b, a) if x is not None)
        parts.append(f"{label}answer-token loss {shown}" + (" (before -> after)" if b is not None and a is not None
                                                            else ""))
    return "; ".join(parts)
