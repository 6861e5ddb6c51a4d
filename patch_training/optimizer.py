"""AdamW with linear warm-up + cosine decay and global-norm clipping (gin-configurable).

Weight decay applies to matrices only. Norm scales are excluded by name because with scanned
layers they are 2-D (`[layers, embed]`), so "ndim >= 2" alone would wrongly decay them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import optax

from patch_training.errors import UserError

_NO_DECAY_NAME_PARTS = ("norm", "scale", "bias")


@gin.configurable(module="optimizer")
@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 3e-4        # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 100
    end_lr_fraction: float = 0.1       # cosine decays to this fraction of the peak
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_grad_norm: float = 1.0        # 0 or less disables clipping

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise UserError(f"OptimizerConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise UserError(f"OptimizerConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.end_lr_fraction <= 1.0:
            raise UserError(f"OptimizerConfig.end_lr_fraction must be in [0, 1], got {self.end_lr_fraction}")


def learning_rate_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """0 -> peak linearly over `warmup_steps`, then cosine to `end_lr_fraction * peak` at `total_steps`."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=cfg.learning_rate * cfg.end_lr_fraction)


def _path_names(path) -> list[str]:
    names = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        names.append(str(key).lower())
    return names


def decay_mask(params: Any) -> Any:
    """True for weight matrices (embeddings, projections); False for norm scales, biases and 1-D leaves."""
    def is_matrix(path, leaf) -> bool:
        names = _path_names(path)
        if any(part in n for n in names for part in _NO_DECAY_NAME_PARTS):
            return False
        return getattr(leaf, "ndim", 0) >= 2
    return jax.tree_util.tree_map_with_path(is_matrix, params)


def make_optimizer(cfg: OptimizerConfig, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and its schedule (the trainer logs `schedule(step)`)."""
    cfg.validate()
    schedule = learning_rate_schedule(cfg, total_steps)
    parts = []
    if cfg.clip_grad_norm and cfg.clip_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_grad_norm))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=decay_mask))
    return optax.chain(*parts), schedule
