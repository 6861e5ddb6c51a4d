"""Fine-tuning run: a pretrained checkpoint's params, prompt-masked rows, the pre-training trainer.

A fine-tuning run is the same `Trainer` as pre-training (sharding, exact resume after SIGKILL,
metrics.jsonl, TensorBoard, loss plot), configured by the same `TrainerConfig`; what differs is
where the parameters start (`INIT_CHECKPOINT`, params only: fresh optimizer and schedule) and
the data (prompt/answer rows whose loss weights count answer tokens only, or a mixture).

Data factories are passed *uncalled* from gin (`@train/make_prompt_answer_dataset`, without
parentheses) and called here with the checkpoint's vocabulary, so the rows are always tokenized
the way the checkpoint was trained.

The run dir gets `finetune.json`: the init checkpoint, validation answer-token loss before
(the init params) and after fine-tuning, and the Case2Code pass@1 hand-off when it ran.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gin
import jax

from patch_training.contract.checkpoint import Checkpoint
from patch_training.contract.layout import record_file
from patch_training.contract.records import EvalRecord
from patch_training.errors import UserError
from patch_training.multihost import is_primary

SUMMARY_FILE = "finetune.json"
CASE2CODE_EVAL_MODULE = "evals.case2code"


def _say(text: str) -> None:
    if is_primary():
        print(text, file=sys.stderr, flush=True)


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
    checkpoint, opened without its weights (a resumed run never needs them). Its config (numerics may be
    overridden) and vocabulary become the run's; a run config that names another vocabulary is refused."""
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


def _init_params(init: Checkpoint, mesh) -> Any:
    """The init checkpoint's params, placed directly in the run's parameter shardings."""
    from patch_training import partitioning as sharding_lib
    from patch_training.model import abstract_params

    with sharding_lib.mesh_context(mesh):
        shardings = sharding_lib.param_shardings(abstract_params(init.config), mesh)
    return init.with_params(shardings=shardings).params


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


def validation_loss(params, model_config, eval_sets: Mapping[str, Any], *, batch_size: int,
                    limit: int | None, mesh) -> dict[str, dict[str, float]]:
    """Answer-token loss of `params` on every validation set (the trainer's evaluation, standalone)."""
    from patch_training import partitioning as sharding_lib
    from patch_training.evaluation import evaluate
    from patch_training.model import Transformer, abstract_params
    from patch_training.train_step import StepConfig, make_eval_step, step_compiler_options

    # The trainer's eval step gets the same per-jit options (oneDNN dots for bf16 on CPU).
    options = step_compiler_options(model_config, StepConfig(), mesh.devices.flat[0].platform)
    with sharding_lib.mesh_context(mesh):
        params_sh = sharding_lib.param_shardings(abstract_params(model_config), mesh)
        step = jax.jit(make_eval_step(Transformer(model_config), 1),
                       in_shardings=(params_sh, sharding_lib.batch_sharding(mesh)),
                       out_shardings=sharding_lib.replicated(mesh), compiler_options=options)
        return {name: evaluate(step, params, data, batch_size=batch_size, limit=limit, mesh=mesh)
                for name, data in eval_sets.items()}


def run_case2code_eval(run_dir: Path, data: str | None, limit: int) -> dict:
    """A short Case2Code pass@1 through `python -m evals.case2code run` (a subprocess: the eval is its own stage)."""
    if limit <= 0:
        return {"status": "not requested"}
    if not data or not Path(data).is_file():
        _say(f"skipping Case2Code pass@1: held-out file {data!r} not found")
        return {"status": "skipped", "reason": f"data {data!r} not found"}
    out = run_dir / "case2code_eval"
    cmd = [sys.executable, "-m", CASE2CODE_EVAL_MODULE, "run", "--checkpoint", str(run_dir), "--data", str(data),
           "--out", str(out), "--limit", str(int(limit))]
    _say(f"Case2Code pass@1 on {limit} held-out rows: {' '.join(cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    record = {"status": "completed" if proc.returncode == 0 else "failed", "returncode": proc.returncode,
              "command": cmd, "out": str(out), "wall_s": round(time.perf_counter() - t0, 1)}
    results = record_file(out)   # evals.case2code's EvalRecord; keep its summary (pass@1, gold ceiling)
    if results.is_file():
        try:
            record["summary"] = EvalRecord.read(results).summary
        except UserError as e:
            _say(f"Case2Code eval record unreadable: {e}")
    if proc.returncode:
        _say(f"Case2Code eval exited with status {proc.returncode}; fine-tuning itself completed")
    return record


@gin.configurable(module="finetune")
def run_finetune(*, model_dir: str = gin.REQUIRED, init_checkpoint: str = gin.REQUIRED,
                 train_data: Any = gin.REQUIRED, eval_data: Any = None, trainer_config: Any = None,
                 optimizer_config: Any = None, checkpoint_config: Any = None,
                 mesh_shape: Sequence[int] | None = None, model_overrides: Mapping[str, Any] | None = None,
                 vocab: Any = None, eval_before: bool = True, case2code_eval_data: str | None = None,
                 case2code_eval_limit: int = 0):
    """Fine-tune `init_checkpoint` into `model_dir` (resuming what is there); the gin entry point.

    train_data / eval_data: uncalled dataset factories (or a {name: factory} dict for eval_data).
    vocab: leave None (the checkpoint's); if set it must equal the checkpoint's.
    eval_before: measure the validation loss of the init params once, before step 1.
    case2code_eval_limit > 0: afterwards, pass@1 on that many rows of `case2code_eval_data`.
    """
    from patch_training.checkpoint_manifest import latest_complete_step
    from patch_training.gin_utils import check_all_bindings_used, write_operative_config
    from patch_training.partitioning import make_mesh
    from patch_training.optimizer import OptimizerConfig
    from patch_training.trainer import Trainer, TrainerConfig

    if not model_dir:
        raise UserError("MODEL_DIR is empty: pass --gin.MODEL_DIR=\"'runs/<name>'\"")
    run_dir = Path(model_dir)
    init, init_vocab = _open_init(init_checkpoint, model_overrides=model_overrides, vocab=vocab)
    cfg = trainer_config or TrainerConfig()
    cfg.validate()
    if cfg.patch_size != 1:
        raise UserError("fine-tuning is token level: TrainerConfig.patch_size must be 1")
    if cfg.sequence_length > init.config.max_seq_len:
        raise UserError(f"TrainerConfig.sequence_length={cfg.sequence_length} exceeds the checkpoint's "
                        f"positional capacity max_seq_len={init.config.max_seq_len} (override it with "
                        "model_overrides if RoPE allows)")
    train = _build(train_data, init_vocab, "train_data")
    if train is None:
        raise UserError("finetune.run_finetune.train_data is not set")
    if train.sequence_length != cfg.sequence_length:
        raise UserError(f"train rows hold {train.sequence_length} tokens but "
                        f"TrainerConfig.sequence_length={cfg.sequence_length}")
    evals = _build(eval_data, init_vocab, "eval_data")
    eval_sets = evals if isinstance(evals, Mapping) else ({"": evals} if evals is not None else {})
    mesh = make_mesh(mesh_shape)
    check_all_bindings_used()  # a --gin flag that nothing above read is a mistake, not a no-op

    summary = _read_summary(run_dir)
    recorded = summary.get("init_checkpoint")
    if recorded and recorded != str(init.path):
        raise UserError(f"{run_dir} was fine-tuned from {recorded}, not {init.path}; use a new MODEL_DIR")
    ckpt_dir = run_dir / "checkpoints"
    resuming = ckpt_dir.is_dir() and latest_complete_step(ckpt_dir) is not None
    params = None
    if not resuming:
        params = _init_params(init, mesh)
        _say(f"fine-tuning from {init.path} (params only; fresh optimizer and schedule)")
    summary.update({"init_checkpoint": str(init.path), "model_config": init.config.to_dict(),
                    "train_rows": train.num_rows, "train": repr(train)})
    # Decided by the shared checkpoint dir, not by finetune.json (only the primary host writes it),
    # so every host takes part in the same collective evaluation.
    if eval_before and eval_sets and not resuming:
        bs = cfg.eval_batch_size or cfg.batch_size
        before = validation_loss(params, init.config, eval_sets, batch_size=bs, limit=cfg.eval_batches,
                                 mesh=mesh)
        summary["before"] = {name or "validation": m for name, m in before.items()}
        for name, m in before.items():
            _say(f"validation{' ' + name if name else ''} answer-token loss before fine-tuning: "
                 f"{m['loss']:.4f} ({m['tokens']:.0f} tokens)")
    _write_summary(run_dir, summary)

    if is_primary():
        write_operative_config(run_dir)
    trainer = Trainer(run_dir, init.config, cfg, train, eval_sets or None,
                      optimizer_config or OptimizerConfig(), vocab_spec=init.vocab_spec, mesh=mesh,
                      initial_params=params, checkpoint_config=checkpoint_config)
    result = trainer.run()
    summary["status"] = result.status
    summary["final_step"] = result.final_step
    if result.status == "completed":
        if result.eval_by_set:
            summary["after"] = {name or "validation": m for name, m in result.eval_by_set.items()}
        summary["case2code_pass_at_1"] = (run_case2code_eval(run_dir, case2code_eval_data, case2code_eval_limit)
                                          if is_primary() else None)
    _write_summary(run_dir, summary)
    if is_primary():
        write_operative_config(run_dir)
        print(summary_line(summary, run_dir), flush=True)
    return result, summary


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
