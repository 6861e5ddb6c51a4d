"""Cost accounting for patch-level training: the stage plan, analytic FLOPs and `cost.json`.

At the same in-network length T, a patch step (B1 rows of K·T tokens, T patches each) costs what a
token step of B1 rows of T tokens costs, but consumes K times the tokens. Training on a fraction λ
of a token budget at patch level and the rest at token level therefore costs λ/K + (1 − λ) of
token-only training (REFERENCE §1). FLOPs follow the MaxText convention (`mfu.py`: 3× forward,
causal attention halved), with the number of patches as the length in the patch stage.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

from patch_training import mfu as mfu_lib
from patch_training.errors import UserError

COST_FILE = "cost.json"


def parse_fraction(value: Any, what: str = "patch_fraction") -> float:
    """A float, an int, or a string such as '2/3'; must lie in [0, 1]."""
    try:
        frac = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise UserError(f"{what} must be a number in [0, 1] (e.g. 0.5 or '2/3'), got {value!r}") from None
    if not 0.0 <= frac <= 1.0:
        raise UserError(f"{what} (lambda) must be in [0, 1], got {value!r}")
    return frac


def relative_cost(patch_fraction: float, patch_size: int) -> float:
    """λ/K + (1 − λ): compute relative to token-only training on the same number of tokens."""
    return patch_fraction / patch_size + (1.0 - patch_fraction)


@dataclasses.dataclass(frozen=True)
class StagePlan:
    index: int                # 1: patch level, 2: token level
    name: str                 # sub-directory of the run dir
    patch_size: int           # K in this stage (1 at token level)
    sequence_length: int      # tokens per row: K·T at patch level, T at token level
    network_length: int       # positions inside the network (T in both stages)
    batch_size: int
    num_steps: int
    fraction: float           # share of the token budget assigned to this stage

    @property
    def tokens(self) -> int:
        return self.num_steps * self.batch_size * self.sequence_length

    def flops_per_step(self, model_config) -> float:
        return mfu_lib.training_flops_per_step(model_config, self.network_length, self.batch_size)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tokens": self.tokens}


def stage_dir_name(index: int, patch_size: int) -> str:
    return f"stage1_patch_k{patch_size}" if index == 1 else "stage2_token"


def plan_stages(*, token_budget: int, patch_fraction: float, patch_size: int, sequence_length: int,
                batch_size: int, patch_batch_size: int, patch_sequence_length: int) -> list[StagePlan]:
    """Steps per stage from the budget: λ·budget/(B1·K·T) and (1−λ)·budget/(B2·T), rounded.

    A stage with no share of the budget is left out (λ=0: token-only, λ=1: patch-only).
    """
    plans = []
    shares = ((1, patch_fraction, patch_size, patch_sequence_length, patch_batch_size),
              (2, 1.0 - patch_fraction, 1, sequence_length, batch_size))
    for index, share, k, length, rows in shares:
        if share <= 0:
            continue
        steps = round(share * token_budget / (rows * length))
        if steps < 1:
            raise UserError(f"token_budget={token_budget} gives stage {index} no step "
                            f"({share:.3f} of it over {rows}x{length} tokens per step); raise the budget")
        plans.append(StagePlan(index, stage_dir_name(index, k), k, length, length // k, rows, steps, share))
    return plans


def format_plan(plans: list[StagePlan], *, token_budget: int, patch_fraction: float, patch_size: int) -> list[str]:
    """The plan as a few printable lines: per stage its steps (one optimizer update each, however many
    microbatches), rows and tokens per step, positions per row in the network, tokens, and share of the updates."""
    updates = sum(p.num_steps for p in plans)
    header = ("stage", "steps", "rows/step", "tokens/row", "tokens/step", "positions/row", "tokens", "updates")
    rows = [header] + [(p.name, f"{p.num_steps:,}", f"{p.batch_size:,}", f"{p.sequence_length:,}",
                        f"{p.batch_size * p.sequence_length:,}", f"{p.network_length:,}", f"{p.tokens:,}",
                        f"{100 * p.num_steps / updates:.1f}%") for p in plans]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"two-stage plan: {token_budget:,} tokens, K={patch_size}, lambda={patch_fraction:.4g}, "
             f"relative cost {relative_cost(patch_fraction, patch_size):.3f}; {updates:,} optimizer updates"]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return lines


def cost_report(model_config, plans: list[StagePlan], *, token_budget: int, patch_fraction: float,
                patch_size: int, sequence_length: int, measured: dict[int, dict]) -> dict:
    """The `cost.json` object. `measured[stage index]` holds wall/eval seconds and status."""
    # The baseline trains every token at token level, where positions in the network = tokens per row.
    baseline_flops = mfu_lib.training_flops_per_step(model_config, sequence_length, 1) * token_budget / sequence_length
    stages, total_flops, total_wall, total_tokens = [], 0.0, 0.0, 0
    for plan in plans:
        got = measured.get(plan.index, {})
        flops = plan.flops_per_step(model_config) * plan.num_steps
        entry = {**plan.to_dict(), "flops_per_step": plan.flops_per_step(model_config), "flops": flops,
                 "relative_flops": flops / baseline_flops, "status": got.get("status", "not started"),
                 "wall_s": got.get("wall_s"), "eval_s": got.get("eval_s"),
                 "train_wall_s": (got["wall_s"] - got.get("eval_s", 0.0)) if got.get("wall_s") is not None
                 else None}
        stages.append(entry)
        total_flops += flops
        total_tokens += plan.tokens
        total_wall += got.get("wall_s") or 0.0
    return {
        "patch_size": patch_size, "patch_fraction": patch_fraction, "token_budget": token_budget,
        "relative_cost": relative_cost(patch_fraction, patch_size),
        "relative_cost_formula": "lambda/K + (1 - lambda)",
        "relative_flops_analytic": total_flops / baseline_flops,
        "flops_convention": f"3x forward matmul FLOPs, attention halved for the causal mask ({mfu_lib.MFU_METRIC});"
                            " patch count as the sequence length in the patch stage",
        "token_only_flops": baseline_flops, "total_flops": total_flops, "total_tokens": total_tokens,
        "total_wall_s": total_wall, "stages": stages,
    }
