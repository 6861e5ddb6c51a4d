"""The one way to open a model checkpoint: `Checkpoint.open(path)`.

Three layouts open the same way:

- a **params checkpoint** (`params_io.save_params`, `hf_convert import`): `model_config.json`,
  `vocab.json` (+ the tokenizer files it names) and `params/`;
- a **trainer run dir**: `model_config.json` and `vocab.json` at the root, steps under `checkpoints/`
  each holding an orbax item `params`; the newest complete step is read unless `step=` names one;
- an **HF LLaMA directory** (`config.json`, safetensors, tokenizer files), converted in memory.

`model_config.json` and `vocab.json` are read once, here; everything a stage needs afterwards
(the config with numeric overrides, the vocab spec with absolute tokenizer paths, the seqio
vocabulary, the params placed where the caller wants them) comes from the returned object, so the
trainer, fine-tuning, the eval backends, `evals.generate` and `evals.serve` cannot disagree about
what a checkpoint holds. Every expected problem is one `UserError` line naming the file.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from patch_training.checkpoint_manifest import incompleteness, latest_complete_step
from patch_training.errors import UserError, squash
from patch_training.model import ModelConfig
from patch_training.params_io import MODEL_CONFIG_FILE, PARAMS_SUBDIR, VOCAB_FILE, check_params_match

# Fields that decide parameter shapes or structure: the saved arrays fix them, so an opener may
# change numerics (dtype, remat, max_seq_len, ...) but never these.
SHAPE_FIELDS = frozenset({"vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                          "num_kv_heads", "head_dim", "tie_embeddings", "scan_layers"})
LAYOUTS = ("params", "run", "hf")
HF_CONFIG_FILE = "config.json"
_TOKENIZER_KINDS = ("sentencepiece", "hf_tokenizer")


@dataclasses.dataclass(frozen=True, eq=False)
class Checkpoint:
    """An opened checkpoint. `params` is None when opened with `params=False`; `with_params` loads them."""
    path: Path                       # absolute root of the checkpoint / run dir / HF dir
    layout: str                      # one of LAYOUTS
    step: int | None                 # the trainer step read (run dirs only)
    config: ModelConfig              # model_overrides applied
    vocab_spec: dict | None          # tokenizer paths absolute; None: the checkpoint names no tokenizer
    params: Any = None
    _item: Path | None = dataclasses.field(default=None, repr=False)   # orbax params item (ours)

    @classmethod
    def open(cls, path: str | os.PathLike | None, *, params: bool = True, shardings: Any = None,
             dtype: Any = None, step: int | None = None, hf: bool | None = None,
             model_overrides: Mapping[str, Any] | None = None, vocab: Any = None) -> "Checkpoint":
        """Open `path` (any of the three layouts).

        params: load the weights now (False: config and vocabulary only; `with_params` later).
        shardings / dtype: where and in which dtype the weights land (default: first local device, as saved).
        step: a run dir's step (default: its newest complete one).
        hf: True = must be an HF directory, False = must be ours, None = tell by the files.
        model_overrides: ModelConfig numerics to change; a shape field is refused.
        vocab: the vocabulary a caller's run names (seqio vocabulary, spec or path); it must be the checkpoint's.
        """
        if not path:
            raise UserError("no checkpoint given: pass a params checkpoint, a trainer run dir or an HF directory")
        root = Path(os.path.abspath(path))  # orbax takes absolute local paths only
        if hf is None:
            hf = root.is_dir() and not (root / MODEL_CONFIG_FILE).exists() and (root / HF_CONFIG_FILE).is_file()
        if hf:
            if step is not None:
                raise UserError(f"{root} is an HF directory: it has no trainer steps (step={step})")
            from patch_training.hf_read import read_hf_config
            config, spec, layout, item = read_hf_config(root), _hf_vocab_spec(root), "hf", None
        else:
            layout, step, item = _locate_params(root, step)
            config = _read_model_config(root)
            spec = _read_vocab_spec(root)
        config = _with_overrides(config, model_overrides, root)
        if vocab is not None:
            _check_run_vocab(vocab, spec, root)
        ckpt = cls(root, layout, step, config, spec, None, item)
        return ckpt.with_params(shardings=shardings, dtype=dtype) if params else ckpt

    def with_params(self, *, shardings: Any = None, dtype: Any = None) -> "Checkpoint":
        """This checkpoint with its weights loaded (names and shapes checked against the config)."""
        if self.layout == "hf":
            from patch_training.hf_read import read_hf_params
            loaded = _place(read_hf_params(self.path, self.config), shardings, dtype)
        else:
            loaded = _restore_params(self._item, self.config, f"checkpoint {self._item}", shardings, dtype)
        opened = dataclasses.replace(self, params=loaded)
        if "vocabulary" in self.__dict__:  # a vocabulary already opened is kept, not opened again
            opened.__dict__["vocabulary"] = self.__dict__["vocabulary"]
        return opened

    @functools.cached_property
    def vocabulary(self) -> Any:
        """The seqio vocabulary of `vocab_spec` (None without one), opened on first use and kept."""
        if self.vocab_spec is None:
            return None
        from patch_training.data.vocab import vocab_from_spec
        try:
            return vocab_from_spec(self.vocab_spec)
        except UserError as e:
            raise UserError(f"checkpoint {self.path}: its vocabulary cannot be loaded: {e}") from None

    @functools.cached_property
    def params_fingerprint(self) -> str:
        """Content hash of the loaded weights (see `params_fingerprint`)."""
        if self.params is None:
            raise UserError(f"checkpoint {self.path}: opened without params, so it has no weights to fingerprint")
        return params_fingerprint(self.params)

    def __str__(self) -> str:
        return f"{self.path}" + (f" (step {self.step})" if self.step is not None else "")


def params_fingerprint(params: Any) -> str:
    """Content hash of a params pytree (every byte; a few seconds for a 1B model). The eval backends key
    generation caches and results by it, so it must not change for the same weights."""
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda x: jax.tree_util.keystr(x[0])):
        arr = np.asarray(jax.device_get(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str((arr.shape, arr.dtype)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- our layouts


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None


def _locate_params(root: Path, step: int | None) -> tuple[str, int | None, Path]:
    """(layout, step, orbax params item) of a params checkpoint or trainer run dir."""
    if not root.exists():
        raise UserError(f"checkpoint directory not found: {root}")
    if (root / PARAMS_SUBDIR).is_dir():
        if step is not None:
            raise UserError(f"{root} is a params checkpoint: it has no trainer steps (step={step})")
        return "params", None, root / PARAMS_SUBDIR
    ckpt_dir = root / "checkpoints"
    if not ckpt_dir.is_dir():
        raise UserError(f"{root} is neither a params checkpoint (no {PARAMS_SUBDIR}/) "
                        f"nor a trainer run dir (no checkpoints/)")
    if step is None:
        step = latest_complete_step(ckpt_dir)
        if step is None:
            raise UserError(f"run directory {root} has no complete checkpoint under {ckpt_dir}")
    else:
        why = incompleteness(ckpt_dir / str(step))
        if why is not None:
            raise UserError(f"checkpoint step {step} in {ckpt_dir} cannot be read: {why}")
    item = ckpt_dir / str(step) / PARAMS_SUBDIR
    if not item.is_dir():
        raise UserError(f"checkpoint step {step} in {ckpt_dir} has no '{PARAMS_SUBDIR}' item")
    return "run", step, item


def _read_model_config(root: Path) -> ModelConfig:
    path = root / MODEL_CONFIG_FILE
    data = _read_json(path, "model config")
    if not isinstance(data, dict):
        raise UserError(f"model config {path} is not a JSON object")
    try:
        return ModelConfig.from_dict(data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def _read_vocab_spec(root: Path) -> dict | None:
    """vocab.json with its tokenizer path made absolute; None when the checkpoint has none (token ids only)."""
    from patch_training.data.hf_tokenizer import tokenizer_spec
    from patch_training.data.vocab import resolve_spec

    path = root / VOCAB_FILE
    if not path.exists():
        return None
    spec = _read_json(path, "vocab spec")
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in ("byte", *_TOKENIZER_KINDS):
        raise UserError(f"{path}: expected {{\"kind\": \"byte\" | \"sentencepiece\" | \"hf_tokenizer\", ...}}, "
                        f"got {json.dumps(spec)[:120]}")
    carried = tokenizer_spec(root)
    if kind == "byte" and carried is not None:
        # Older `hf_convert import` runs wrote 'byte' beside a carried tokenizer.json; reading text as
        # bytes then "works" and trains or evaluates the model on the wrong ids, so refuse instead.
        raise UserError(f"{path} says 'byte' but the checkpoint carries {carried['model_path']}; "
                        f"re-run `python -m patch_training.hf_convert import` (or write "
                        f"{json.dumps(carried)} into {VOCAB_FILE})")
    if kind in _TOKENIZER_KINDS:
        if not spec.get("model_path"):
            raise UserError(f"{path}: a '{kind}' vocabulary needs 'model_path'")
        spec = resolve_spec(spec, root)
        if not Path(spec["model_path"]).is_file():
            raise UserError(f"{path} names tokenizer file {spec['model_path']}, which does not exist")
    return spec


def _restore_params(item: Path, config: ModelConfig, where: str, shardings: Any, dtype: Any) -> Any:
    import flax.linen as nn
    import orbax.checkpoint as ocp
    from patch_training.model import abstract_params

    abstract = nn.unbox(abstract_params(config))
    if shardings is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree_util.tree_map(lambda _: device, abstract)
    targets = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype if dtype is None else dtype, sharding=s), abstract, shardings)
    with ocp.StandardCheckpointer() as ckptr:
        try:
            saved = ckptr.metadata(item)
            saved_tree = getattr(saved, "item_metadata", saved)
            saved_tree = getattr(saved_tree, "tree", saved_tree)
        except Exception as e:  # noqa: BLE001 - orbax raises many types for a damaged item
            raise UserError(f"{where}: cannot read params checkpoint metadata: {squash(e, 200)}") from None
        if not saved_tree:  # orbax logs a warning and returns nothing for a damaged _METADATA file
            raise UserError(f"{where}: cannot read params checkpoint metadata (_METADATA missing or damaged)")
        check_params_match(jax.tree_util.tree_map(lambda m: np.empty(tuple(m.shape), np.uint8)
                                                  if hasattr(m, "shape") else m, saved_tree),
                           config, where)
        try:
            return ckptr.restore(item, targets)
        except Exception as e:  # noqa: BLE001 - as above
            raise UserError(f"{where}: cannot restore params: {squash(e, 200)}") from None


# ----------------------------------------------------------------------------- HF directories


def _hf_vocab_spec(root: Path) -> dict | None:
    from patch_training.data.hf_tokenizer import tokenizer_spec
    from patch_training.data.vocab import resolve_spec

    spec = tokenizer_spec(root)
    return None if spec is None else resolve_spec(spec, root)


def _place(params: Any, shardings: Any, dtype: Any) -> Any:
    if dtype is not None:
        params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(dtype), params)
    return params if shardings is None else jax.device_put(params, shardings)


# ----------------------------------------------------------------------------- checks


def _with_overrides(config: ModelConfig, overrides: Mapping[str, Any] | None, root: Path) -> ModelConfig:
    if not overrides:
        return config
    shaped = sorted(set(overrides) & SHAPE_FIELDS)
    if shaped:
        raise UserError(f"checkpoint {root}: the run may not change {', '.join(shaped)} "
                        f"(the checkpoint's parameters fix them); drop those model overrides")
    unknown = sorted(set(overrides) - set(config.to_dict()))
    if unknown:
        raise UserError(f"model overrides name unknown ModelConfig field(s) {unknown}")
    return dataclasses.replace(config, **dict(overrides))


def _check_run_vocab(vocab: Any, spec: dict | None, root: Path) -> None:
    """Refuse a run whose configured vocabulary is not the one the checkpoint was trained with."""
    from patch_training.data import vocab as vocab_lib

    run_spec = vocab_lib.as_spec(vocab)
    if spec is None or vocab_lib.spec_fingerprint(run_spec) != vocab_lib.spec_fingerprint(spec):
        raise UserError(f"checkpoint {root} was trained with vocabulary {spec} but the run config names "
                        f"{run_spec}; the run must tokenize with the checkpoint's")
