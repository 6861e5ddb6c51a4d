"""The study's run list: which (K, λ, seed) runs, their row gin files, relative costs and the budget.

A run is one two-stage trainer run dir (`<out>/<name>/`) configured by a row file in
`configs/experiments/patch/study/` plus a seed. Names are `<row>_s<seed>` (e.g. `k4_lambda2_3_s1`).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Sequence

from patch_training.errors import UserError

CONFIG_DIR = "experiments/patch/study"
BASE_GIN = f"{CONFIG_DIR}/base.gin"
# The designed per-run budget (base.gin): 3600 token steps of 32 x 128 tokens.
BATCH_SIZE = 32
SEQUENCE_LENGTH = 128
DESIGN_TOKEN_STEPS = 3600
# Every (K, λ) below splits into whole steps when the token-step count is a multiple of this.
STEP_QUANTUM = 120


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration of the study (a row of the results table before seeds)."""
    name: str
    patch_size: int
    patch_fraction: Fraction
    seeded: bool  # gets --seeds seeds (the two headline configs); the others run seed 0 only

    @property
    def gin_file(self) -> str:
        return f"{CONFIG_DIR}/{self.name}.gin"

    @property
    def relative_cost(self) -> float:
        """λ/K + (1 − λ): the share of token-only compute (REFERENCE §1)."""
        lam = self.patch_fraction
        return float(lam / self.patch_size + (1 - lam))

    @property
    def label(self) -> str:
        if self.patch_fraction == 0:
            return "token-only"
        return f"K={self.patch_size}, λ={self.patch_fraction}"


ROWS: tuple[Row, ...] = (
    Row("token_only", 1, Fraction(0), True),
    Row("k4_lambda2_3", 4, Fraction(2, 3), True),
    Row("k4_lambda1_2", 4, Fraction(1, 2), False),
    Row("k4_lambda4_5", 4, Fraction(4, 5), False),
    Row("k2_lambda2_3", 2, Fraction(2, 3), False),
    Row("k8_lambda2_3", 8, Fraction(2, 3), False),
)
ROW_BY_NAME = {r.name: r for r in ROWS}


@dataclasses.dataclass(frozen=True)
class StudyRun:
    row: Row
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.name}_s{self.seed}"


def plan_runs(seeds: int = 3, only: Sequence[str] | None = None) -> list[StudyRun]:
    """Every run of the study in the order they train (seed 0 of each row first, so an early stop
    still leaves one run per configuration); `only` keeps runs named by run name or row name."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    runs = [StudyRun(row, 0) for row in ROWS]
    runs += [StudyRun(row, s) for s in range(1, seeds) for row in ROWS if row.seeded]
    if only:
        known = {r.name for r in runs} | set(ROW_BY_NAME)
        unknown = [x for x in only if x not in known]
        if unknown:
            raise UserError(f"--only: unknown run(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        runs = [r for r in runs if r.name in only or r.row.name in only]
    return runs


def total_relative_cost(runs: Sequence[StudyRun]) -> float:
    """The study's cost in token-only-run equivalents."""
    return sum(r.row.relative_cost for r in runs)


def token_budget(token_steps: int) -> int:
    return token_steps * BATCH_SIZE * SEQUENCE_LENGTH


def token_steps_for_minutes(minutes: float, seconds_per_token_step: float, cost: float,
                            overhead_s_per_run: float, n_runs: int) -> int:
    """The largest whole-quantum step count whose study fits `minutes` at the measured step time.

    Capped at the designed budget (a longer allowance never makes a run bigger than base.gin's) and
    at least one quantum (a shorter allowance then runs over; the printed estimate says by how much).
    """
    train_s = minutes * 60.0 - overhead_s_per_run * n_runs
    steps = int(max(train_s, 0.0) / max(cost, 1e-9) / seconds_per_token_step) // STEP_QUANTUM * STEP_QUANTUM
    # Below one quantum the study cannot shrink further; the up-front estimate then says how long it takes.
    steps = max(steps, STEP_QUANTUM)
    return min(steps, DESIGN_TOKEN_STEPS)
