"""The study's run list: which (size, K, λ, budget, seed) runs, their row gin files, costs and the budget.

A run is one two-stage trainer run dir (`<out>/<name>/`) configured by a row file in
`configs/experiments/patch/study/` plus a seed. Names are `<row>_s<seed>` (e.g. `k4_lambda2_3_s1`).

Rows (issue 25): at the main size, token-only at 1x, 1/2x and 2/3x of the token budget (each a full run
with its own schedule, so its final point has annealed), K=4 with λ ∈ {1/2, 2/3, 4/5}, and K ∈ {2, 8} at
λ=2/3; at a second size with a quarter of the parameters and the same tokens per parameter, token-only and
K=4, λ=2/3. Every row gets `--seeds` seeds.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Sequence

from patch_training.errors import UserError

CONFIG_DIR = "experiments/patch/study"
BASE_GIN = f"{CONFIG_DIR}/base.gin"
# The designed per-run budget of the main size (base.gin): 3600 token steps of 32 x 128 tokens.
BATCH_SIZE = 32
SEQUENCE_LENGTH = 128
DESIGN_TOKEN_STEPS = 3600
# Every (K, λ, budget fraction) of the main size splits into whole steps when the token-step count is a
# multiple of this.
STEP_QUANTUM = 120
# What the study records in study.json; a study dir without it was planned under an older recipe.
RECIPE = "issue-25: B2/K rows per patch step, cosine to 0, token-only at 1, 1/2 and 2/3 of the budget, two sizes"


@dataclasses.dataclass(frozen=True)
class Size:
    """A model size: its gin file, its parameter count relative to the main size, and the step quantum
    that keeps its rows' stage splits whole."""
    name: str
    model_gin: str
    params: int                  # all parameters, both embedding tables counted (checked by a test)
    quantum: int
    # A token step's time relative to the main size's, for the up-front ETA only (analytic FLOPs per
    # token put it near 0.2; CPU per-step overheads make the measured ratio larger).
    step_cost_estimate: float

    def token_steps(self, main_steps: int) -> int:
        """Token steps at the same tokens per parameter as the main size's `main_steps`, whole quanta."""
        if self.params == MAIN_PARAMS:
            return main_steps
        steps = round(main_steps * self.params / MAIN_PARAMS / self.quantum) * self.quantum
        return max(steps, self.quantum)


MAIN_PARAMS = 639_840
MAIN = Size("main", f"{CONFIG_DIR}/model.gin", MAIN_PARAMS, STEP_QUANTUM, 1.0)
# A quarter of the parameters (d 48, 2 layers): 153,840 / 639,840 = 0.240. Its rows are token-only and
# K=4, λ=2/3, whose steps split whole in multiples of 3 (12 keeps the K=4 patch rows whole too).
SMALL = Size("small", f"{CONFIG_DIR}/model_small.gin", 153_840, 12, 0.3)
SIZES = {s.name: s for s in (MAIN, SMALL)}


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration of the study (a row of the results table before seeds)."""
    name: str
    patch_size: int
    patch_fraction: Fraction
    budget_fraction: Fraction = Fraction(1)   # of the size's token budget, with a full schedule of its own
    size: Size = MAIN
    tier: int = 1                             # training order: lower tiers first (see ROWS)

    @property
    def gin_file(self) -> str:
        return f"{CONFIG_DIR}/{self.name}.gin"

    @property
    def relative_cost(self) -> float:
        """Compute as a share of the same size's token-only run at 1x: budget × (λ/K + (1 − λ)) (REFERENCE §1)."""
        lam = self.patch_fraction
        return float(self.budget_fraction * (lam / self.patch_size + (1 - lam)))

    @property
    def main_cost(self) -> float:
        """Estimated time as a share of a main-size token-only run (the ETA and the study's size): tokens
        scale with parameters across sizes, the step time by the size's estimate."""
        if self.size is MAIN:
            return self.relative_cost
        return self.relative_cost * self.size.params / MAIN_PARAMS * self.size.step_cost_estimate

    @property
    def label(self) -> str:
        prefix = "" if self.size is MAIN else f"{self.size.name}: "
        if self.patch_fraction == 0:
            budget = "" if self.budget_fraction == 1 else f" at {self.budget_fraction}x tokens"
            return f"{prefix}token-only{budget}"
        return f"{prefix}K={self.patch_size}, λ={self.patch_fraction}"

    def token_steps(self, main_steps: int) -> int:
        steps = self.size.token_steps(main_steps) * self.budget_fraction
        if steps.denominator != 1:
            raise UserError(f"{self.name}: {self.size.token_steps(main_steps)} token steps x {self.budget_fraction}"
                            f" is not whole; the main size's steps must be a multiple of {STEP_QUANTUM}")
        return int(steps)

    def token_budget(self, main_steps: int) -> int:
        return token_budget(self.token_steps(main_steps))


# Training order (tiers): what the headline claims need first, so that a study stopped early still
# carries them with three seeds: (1) token-only 1x, K=4 λ=2/3 and token-only at 1/2 (its equal-compute
# partner); (2) the small size (the trend with scale, cheap); (3) K=2 λ=2/3 and its equal-compute
# token-only at 2/3; (4) the λ and K=8 ablations.
ROWS: tuple[Row, ...] = (
    Row("token_only", 1, Fraction(0), tier=1),
    Row("k4_lambda2_3", 4, Fraction(2, 3), tier=1),
    Row("token_only_x1_2", 1, Fraction(0), Fraction(1, 2), tier=1),
    Row("small_token_only", 1, Fraction(0), size=SMALL, tier=2),
    Row("small_k4_lambda2_3", 4, Fraction(2, 3), size=SMALL, tier=2),
    Row("k2_lambda2_3", 2, Fraction(2, 3), tier=3),
    Row("token_only_x2_3", 1, Fraction(0), Fraction(2, 3), tier=3),
    Row("k4_lambda1_2", 4, Fraction(1, 2), tier=4),
    Row("k4_lambda4_5", 4, Fraction(4, 5), tier=4),
    Row("k8_lambda2_3", 8, Fraction(2, 3), tier=4),
)
ROW_BY_NAME = {r.name: r for r in ROWS}
# The comparisons the report makes (patch row, token-only row): the headline at 1x, and equal compute
# against token-only trained to the patch run's cost with its own schedule.
EQUAL_COMPUTE_PARTNER = {"k4_lambda2_3": "token_only_x1_2", "k2_lambda2_3": "token_only_x2_3"}


def baseline_of(row: Row) -> Row:
    """The token-only 1x row of the row's size."""
    return ROW_BY_NAME["token_only" if row.size is MAIN else f"{row.size.name}_token_only"]


@dataclasses.dataclass(frozen=True)
class StudyRun:
    row: Row
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.name}_s{self.seed}"


def plan_runs(seeds: int = 3, only: Sequence[str] | None = None) -> list[StudyRun]:
    """Every run of the study in training order: tier by tier, and within a tier seed 0 of each row,
    then seed 1, ...; `only` keeps runs named by run name or row name."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    runs = [StudyRun(row, s) for tier in sorted({r.tier for r in ROWS}) for s in range(seeds)
            for row in ROWS if row.tier == tier]
    if only:
        known = {r.name for r in runs} | set(ROW_BY_NAME)
        unknown = [x for x in only if x not in known]
        if unknown:
            raise UserError(f"--only: unknown run(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        runs = [r for r in runs if r.name in only or r.row.name in only]
    return runs


def total_relative_cost(runs: Sequence[StudyRun]) -> float:
    """The study's estimated cost in main-size token-only-run equivalents."""
    return sum(r.row.main_cost for r in runs)


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
