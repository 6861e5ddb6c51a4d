"""Write params checkpoints: the on-disk format that `patch_training.contract.checkpoint` opens.

A **params checkpoint** (written by `save_params`, `hf_convert import` and `gguf_import`) holds
`model_config.json`, `vocab.json` (+ the tokenizer files it names) and `params/` (orbax
`StandardSave` of the unboxed fp32 pytree). A trainer run dir keeps the same two JSON files at its root
and a `params` item in each step under `checkpoints/`. Opening either is `Checkpoint.open`'s job, and
only its.

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
from patch_training.errors import UserError
from patch_training.model import ModelConfig, abstract_params

MODEL_CONFIG_FILE = "model_config.json"
VOCAB_FILE = "vocab.json"
PARAMS_SUBDIR = "params"


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


def latest_checkpoint(run_dir: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step of a trainer run dir (None: none yet)."""
    ckpt = Path(run_dir) / "checkpoints"
    return latest_complete_step(ckpt) if ckpt.is_dir() else None
