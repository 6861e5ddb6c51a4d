"""The starting point of a fine-tuning run: parameters (only) of a pretrained checkpoint.

Accepted: a trainer run directory (e.g. the main job's `stage2_token/`; its newest complete step
is read) or a params checkpoint (`patch_training.params_io`, which is also what
`python -m patch_training.hf_convert import` writes from an HF LLaMA directory). The optimizer
state and schedule are never taken over: fine-tuning starts them fresh, as the paper's stage
hand-over does. The model config and vocabulary come from the checkpoint; a run config that
names a different architecture or vocabulary is refused with one line.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from patch_training.errors import UserError


@dataclasses.dataclass
class InitCheckpoint:
    path: Path
    model_config: Any
    vocab_spec: dict
    vocab: Any                      # the seqio vocabulary the data must be tokenized with
    params: Any = None              # loaded lazily (a resumed run does not need them)


# Fields that decide parameter shapes or structure: a fine-tuning run inherits them.
SHAPE_FIELDS = frozenset({"vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                          "num_kv_heads", "head_dim", "tie_embeddings", "scan_layers"})


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k)!r} vs checkpoint {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def open_init_checkpoint(path: str | os.PathLike | None, *, model_overrides: Mapping[str, Any] | None = None,
                         vocab: Any = None) -> InitCheckpoint:
    """Read the checkpoint's model config and vocabulary and check them against the run's.

    model_overrides: numerics a fine-tuning run may change (dtype, remat_policy, max_seq_len, ...).
    vocab: the run's vocabulary if it names one; it must be the checkpoint's.
    """
    from patch_training.data import vocab as vocab_lib
    from patch_training.params_io import load_config, resolve_params_dir

    if not path:
        raise UserError("INIT_CHECKPOINT is empty: pass --gin.INIT_CHECKPOINT=\"'runs/demo/stage2_token'\" "
                        "(a trainer run dir or a params checkpoint, e.g. from hf_convert import)")
    root, _ = resolve_params_dir(path)  # missing dir, no complete step, wrong layout: one line each
    ckpt_config, spec = load_config(root)
    spec = vocab_lib.resolve_spec(spec, root)
    config = ckpt_config
    if model_overrides:
        shaped = sorted(set(model_overrides) & SHAPE_FIELDS)
        if shaped:
            raise UserError(f"init checkpoint {root}: the run may not change {', '.join(shaped)} "
                            f"(the checkpoint's parameters fix them); drop those model overrides")
        unknown = sorted(set(model_overrides) - set(ckpt_config.to_dict()))
        if unknown:
            raise UserError(f"model overrides name unknown ModelConfig field(s) {unknown}")
        config = dataclasses.replace(ckpt_config, **dict(model_overrides))
    try:
        ckpt_vocab = vocab_lib.vocab_from_spec(spec, base_dir=root)
    except UserError as e:
        raise UserError(f"init checkpoint {root}: its vocabulary cannot be loaded: {e}") from None
    if vocab is not None:
        run_spec = vocab_lib.as_spec(vocab)
        if vocab_lib.spec_fingerprint(run_spec) != vocab_lib.spec_fingerprint(spec, base_dir=root):
            raise UserError(f"init checkpoint {root} was trained with vocabulary {spec} but the run "
                            f"config names {run_spec}; fine-tuning must tokenize with the checkpoint's")
    if config.vocab_size < ckpt_vocab.vocab_size:
        raise UserError(f"init checkpoint {root}: model vocab_size {config.vocab_size} is smaller than its "
                        f"vocabulary's {ckpt_vocab.vocab_size} tokens")
    return InitCheckpoint(root, config, spec, ckpt_vocab)


def load_init_params(init: InitCheckpoint, mesh) -> Any:
    """The checkpoint's params, placed directly in the run's parameter shardings."""
    import flax.linen as nn  # noqa: F401  (abstract params are boxed Linen partitioned arrays)
    from patch_training import partitioning as sharding_lib
    from patch_training.model import abstract_params
    from patch_training.params_io import load_params

    with sharding_lib.mesh_context(mesh):
        shardings = sharding_lib.param_shardings(abstract_params(init.model_config), mesh)
    params, _, _ = load_params(init.path, shardings=shardings)  # names and shapes are checked here
    init.params = params
    return params
