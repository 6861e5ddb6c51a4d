"""Save and load model parameters with their config and vocabulary.

Two layouts are readable:

- a **params checkpoint** (written by `save_params` and `hf_convert import`):
  `model_config.json`, `vocab.json` and `params/` (orbax `StandardSave` of the unboxed fp32 pytree);
- a **trainer run dir**: `model_config.json` and `vocab.json` at the root and an orbax
  `CheckpointManager` under `checkpoints/`, whose steps hold an item `params`. The newest complete
  step is read (completeness as `checkpoint_manifest` defines it).

Writes go to a temporary sibling directory that is renamed into place, so a failed save leaves
nothing half-written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np

from patch_training.checkpoint_manifest import latest_complete_step
from patch_training.data.hf_tokenizer import tokenizer_spec
from patch_training.data.vocab import resolve_spec
from patch_training.errors import UserError, squash
from patch_training.model import ModelConfig, abstract_params

MODEL_CONFIG_FILE = "model_config.json"
VOCAB_FILE = "vocab.json"
PARAMS_SUBDIR = "params"


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None


def _tree_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(np.shape(x)) for p, x in flat}


def check_params_match(params: Any, config: ModelConfig, where: str) -> None:
    """Raise a one-line UserError naming the first few leaves whose name or shape differ."""
    want = _tree_shapes(nn.unbox(abstract_params(config)))
    have = _tree_shapes(params)
    problems = [f"{k}: missing" for k in sorted(set(want) - set(have))]
    problems += [f"{k}: unexpected" for k in sorted(set(have) - set(want))]
    problems += [f"{k}: shape {have[k]} != expected {want[k]}"
                 for k in sorted(set(want) & set(have)) if want[k] != have[k]]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{where}: parameters do not match the model config: "
                        f"{'; '.join(problems[:3])}{more}")


def save_params(directory: str | os.PathLike, params: Any, config: ModelConfig,
                vocab_spec: Mapping[str, Any], *, overwrite: bool = False,
                extra_files: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Write a params checkpoint to `directory` atomically; returns its path.

    `extra_files` maps names inside the checkpoint to files copied in (e.g. a tokenizer model that
    `vocab_spec` refers to by relative path).
    """
    import orbax.checkpoint as ocp

    target = Path(directory).absolute()
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise UserError(f"output directory {target} already exists and is not empty")
    params = nn.unbox(params)
    check_params_match(params, config, f"saving {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        (tmp / MODEL_CONFIG_FILE).write_text(config.to_json() + "\n")
        (tmp / VOCAB_FILE).write_text(json.dumps(dict(vocab_spec), indent=2) + "\n")
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, tmp / name)
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / PARAMS_SUBDIR, jax.device_get(params))
            ckptr.wait_until_finished()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _restore_item(item_dir: Path, config: ModelConfig, where: str,
                  shardings: Any = None) -> Any:
    import orbax.checkpoint as ocp

    abstract = nn.unbox(abstract_params(config))
    if shardings is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree_util.tree_map(lambda _: device, abstract)
    targets = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            saved = ckptr.metadata(item_dir)
            saved_tree = getattr(saved, "item_metadata", saved)
            saved_tree = getattr(saved_tree, "tree", saved_tree)
        except Exception as e:
            raise UserError(f"{where}: cannot read params checkpoint metadata: "
                            f"{squash(e, 200)}") from None
        check_params_match(jax.tree_util.tree_map(lambda m: np.empty(tuple(m.shape), np.uint8)
                                                  if hasattr(m, "shape") else m, saved_tree),
                           config, where)
        try:
            return ckptr.restore(item_dir, targets)
        except Exception as e:
            raise UserError(f"{where}: cannot restore params: {squash(e, 200)}") from None


def resolve_params_dir(path: str | os.PathLike) -> tuple[Path, Path]:
    """(root with model_config.json, directory of the orbax params item) for either layout."""
    root = Path(os.path.abspath(path))  # orbax accepts only absolute local paths
    if not root.exists():
        raise UserError(f"checkpoint directory not found: {root}")
    if (root / PARAMS_SUBDIR).is_dir():
        return root, root / PARAMS_SUBDIR
    ckpt_dir = root / "checkpoints"
    if ckpt_dir.is_dir():
        step = latest_complete_step(ckpt_dir)
        if step is None:
            raise UserError(f"run directory {root} has no complete checkpoint under {ckpt_dir}")
        item = ckpt_dir / str(step) / PARAMS_SUBDIR
        if not item.is_dir():
            raise UserError(f"checkpoint step {step} in {ckpt_dir} has no '{PARAMS_SUBDIR}' item")
        return root, item
    raise UserError(f"{root} is neither a params checkpoint (no {PARAMS_SUBDIR}/) "
                    f"nor a trainer run dir (no checkpoints/)")


def load_config(path: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """(ModelConfig, vocab spec) of a params checkpoint or run dir, without loading arrays."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"checkpoint directory not found: {root}")
    config = ModelConfig.from_dict(_read_json(root / MODEL_CONFIG_FILE, "model config"))
    vocab_spec = _read_json(root / VOCAB_FILE, "vocab spec")
    carried = tokenizer_spec(root)
    if vocab_spec.get("kind") == "byte" and carried is not None:
        # Older `hf_convert import` runs wrote 'byte' beside a carried tokenizer.json; reading text as
        # bytes then "works" and trains or evaluates the model on the wrong ids, so refuse instead.
        raise UserError(f"{root / VOCAB_FILE} says 'byte' but the checkpoint carries {carried['model_path']}; "
                        f"re-run `python -m patch_training.hf_convert import` (or write "
                        f"{json.dumps(carried)} into {VOCAB_FILE})")
    return config, vocab_spec


def load_params(path: str | os.PathLike, shardings: Any = None) -> tuple[Any, ModelConfig, dict]:
    """Load (params, ModelConfig, vocab spec) from a params checkpoint or a trainer run dir.

    `shardings`: optional pytree of target shardings (default: the first local device).
    A relative `model_path` in the vocab spec (a tokenizer file) is resolved against the checkpoint root.
    """
    root, item = resolve_params_dir(path)
    config, vocab_spec = load_config(root)
    vocab_spec = resolve_spec(vocab_spec, root)
    params = _restore_item(item, config, f"checkpoint {item}", shardings)
    return params, config, vocab_spec


def latest_checkpoint(run_dir: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step of a trainer run dir (None: none yet)."""
    ckpt = Path(run_dir) / "checkpoints"
    return latest_complete_step(ckpt) if ckpt.is_dir() else None


def load_run_params(run_dir: str | os.PathLike, step: int, model_config: ModelConfig,
                    shardings: Any = None, what: str = "run") -> Any:
    """Params of a trainer run dir at `step`, checked against `model_config` (e.g. stage 1's final
    params for stage 2, or a pretraining run's for fine-tuning). Host arrays unless `shardings`."""
    item = Path(os.path.abspath(run_dir)) / "checkpoints" / str(step) / PARAMS_SUBDIR  # orbax: absolute only
    if not item.is_dir():
        raise UserError(f"{what} checkpoint {item} not found")
    return _restore_item(item, model_config, f"{what} checkpoint {item}", shardings)
