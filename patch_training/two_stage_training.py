"""Two-stage patch-level training in one experiment (arXiv 2407.12665, REFERENCE §1).

Stage 1 trains at patch level (K tokens per patch) on a fraction λ of the token budget; stage 2
trains at token level on the rest, starting from stage 1's final parameters with a fresh optimizer
state and a fresh warm-up + cosine schedule. By default both stages take the same tokens per optimizer
step (B2 rows of T tokens, B2/K rows of K·T), so stage 1 gets λ of the updates, as the official scripts
run it; `two_stage.json` records the rows per patch step, and a run dir resumes with its recorded plan. Each stage is an ordinary `Trainer` run in its own
sub-directory (`stage1_patch_k{K}/`, `stage2_token/`), so resume inside a stage is the trainer's
exact resume. Across the boundary: stage 2 with no checkpoint of its own starts from stage 1's
final checkpoint, so a run killed between the stages simply restarts stage 2.

Data: both stages walk one permutation of K·T-token blocks of the same token stream; stage 2
starts after the blocks stage 1 consumed (see `stage_data`). Validation (token-level perplexity on
every named set, e.g. the code split and WikiText) runs in both stages. The run root gets
`two_stage.json` (the plan), `cost.json` (relative cost λ/K + (1−λ), analytic FLOPs, wall time and
tokens per stage) and each stage dir an `eval.json`.

The library of the method, as a plan for the one training entry (`TwoStagePlan` through
`patch_training.training.train`); the CLI is `python -m patch_training.two_stage` (entry point in
`patch_training.main.two_stage`). Gin names are this module's (`two_stage_training.*`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gin

from patch_training import params_io, patch_cost
from patch_training.multihost import is_primary, say_primary as _say
from patch_training import stage_data as sd
from patch_training.atomic import write_json_atomic
from patch_training.contract.checkpoint import Checkpoint
from patch_training.data.factory import make_dataset
from patch_training.data.paths import wikitext_test_file
from patch_training.errors import UserError
from patch_training.legacy_names import upgrade_plan_record
from patch_training.partitioning import make_mesh
from patch_training.optimizer import OptimizerConfig
from patch_training.params_io import latest_checkpoint
from patch_training.trainer import TrainerConfig
from patch_training.training import Run, Stage, train

PLAN_FILE = "two_stage.json"
EVAL_FILE = "eval.json"
STAGE_SUMMARY_FILE = "stage_summary.json"


@gin.configurable(module="two_stage_training")
@dataclasses.dataclass(frozen=True)
class TwoStageConfig:
    """What the method decides: the budget, K, λ, the row shapes and batch sizes of the two stages.

    Everything else a stage needs (seed, logging, microbatches, eval caps, plotting) comes from the
    gin-bound `trainer.TrainerConfig`; `stage_trainer_config` derives each stage's config from it.
    """
    token_budget: int = gin.REQUIRED          # raw tokens consumed over both stages
    sequence_length: int = gin.REQUIRED       # T: tokens per token-stage row = positions in the network
    batch_size: int = gin.REQUIRED            # B2: token-stage rows per step
    patch_size: int = 4                       # K
    patch_fraction: Any = "2/3"               # λ: share of the budget trained at patch level
    patch_batch_size: int | None = None       # B1 (default B2/K): patch rows of K·T tokens per step
    patch_sequence_length: int | None = None  # tokens per patch-stage row (default K·T); K must divide it
    evals_per_stage: int = 1                  # validation passes per stage, evenly spaced, last at the end

    def validate(self) -> float:
        """Check the config; returns λ as a float."""
        for name in ("token_budget", "sequence_length", "batch_size", "patch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"TwoStageConfig.{name} must be a positive integer, got {value!r}")
        lam = patch_cost.parse_fraction(self.patch_fraction, "TwoStageConfig.patch_fraction")
        k, row = self.patch_size, self.patch_stage_sequence_length
        if row % k:
            raise UserError(f"TwoStageConfig: patch_size K={k} does not divide the patch-stage sequence "
                            f"length {row}")
        if row % self.sequence_length:
            raise UserError(f"TwoStageConfig: patch_sequence_length={row} is not a multiple of "
                            f"sequence_length={self.sequence_length} "
                            "(a patch row must split into whole token rows)")
        if self.evals_per_stage < 0:
            raise UserError(f"TwoStageConfig.evals_per_stage must be >= 0, got {self.evals_per_stage}")
        if self.patch_batch_size is not None and (not isinstance(self.patch_batch_size, int)
                                                  or isinstance(self.patch_batch_size, bool)
                                                  or self.patch_batch_size <= 0):
            raise UserError(f"TwoStageConfig.patch_batch_size must be a positive integer or None, "
                            f"got {self.patch_batch_size!r}")
        per_block = self.patch_rows_per_block
        if lam > 0 and self.patch_batch_size is None and self.batch_size % per_block:
            # B1 = B2/K keeps tokens per step equal; rounding it would quietly change the recipe.
            what = f"K={k}" if per_block == k else f"patch rows of {per_block} token rows"
            raise UserError(f"TwoStageConfig: {what} does not divide batch_size={self.batch_size}, so the patch "
                            f"stage cannot take batch_size/{per_block} rows per step (equal tokens per step); "
                            "set PATCH_BATCH_SIZE (two_stage_training.TwoStageConfig.patch_batch_size) explicitly")
        return lam

    @property
    def patch_stage_sequence_length(self) -> int:
        """Tokens per patch-stage row: `patch_sequence_length`, or K·T when it is unset."""
        if self.patch_sequence_length is not None:
            return self.patch_sequence_length
        return self.patch_size * self.sequence_length

    @property
    def patch_rows_per_block(self) -> int:
        """Token rows one patch row holds: K with the default K·T patch rows."""
        return self.patch_stage_sequence_length // self.sequence_length

    @property
    def patch_rows_per_step(self) -> int:
        """B1: `patch_batch_size`, else B2/K rows of K·T tokens, so that a patch step takes the tokens of a
        token step and the patch stage gets λ of the optimizer updates (the official run_patch.sh /
        run_token.sh: 256 x 8192 and 1024 x 2048 tokens per step; REFERENCE §1)."""
        if self.patch_batch_size is not None:
            return self.patch_batch_size
        return self.batch_size // self.patch_rows_per_block

    def plan(self) -> list[patch_cost.StagePlan]:
        lam = self.validate()
        return patch_cost.plan_stages(token_budget=self.token_budget, patch_fraction=lam,
                                      patch_size=self.patch_size, sequence_length=self.sequence_length,
                                      batch_size=self.batch_size, patch_batch_size=self.patch_rows_per_step,
                                      patch_sequence_length=self.patch_stage_sequence_length)


@dataclasses.dataclass
class StageSources:
    """Where stage rows come from: patch rows (K·T tokens) and token rows (T tokens) of one stream.

    Either may be None when its stage is absent (λ=0 / λ=1); the callables build them lazily so a
    token-only baseline never builds the patch cache.
    """
    patch_rows: Callable[[], sd.RowSource] | None
    token_rows: Callable[[], sd.RowSource] | None


@dataclasses.dataclass
class TwoStageResult:
    run_dir: Path
    stages: dict[int, dict]          # stage index -> {"status", "final_step", "eval": {...}}
    cost: dict


def _write_json(path: Path, obj: Any) -> None:
    if not is_primary():
        return
    write_json_atomic(path, obj, default=float)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_stage_params(stage_dir: Path, step: int, model_config) -> Any:
    """Stage-1 params at `step` on the first local device, checked against stage 2's model config."""
    ckpt = Checkpoint.open(stage_dir, step=step, hf=False, dtype=model_config.param_dtype)
    params_io.check_params_match(ckpt.params, model_config, f"stage-1 checkpoint {ckpt}")
    return ckpt.params


def resolve_config(run_dir: str | os.PathLike, cfg: TwoStageConfig) -> TwoStageConfig:
    """The config this run dir trains with: `cfg`, except that an unset B1 takes the rows per patch step
    the run dir's plan recorded. A run dir planned when B1 defaulted to B2 thus resumes with its own
    plan; the plan check still refuses one whose budget, K, λ or B2 differ."""
    if cfg.patch_batch_size is not None:
        return cfg
    saved = _read_json(Path(run_dir) / PLAN_FILE)
    recorded = upgrade_plan_record(saved).get("patch_batch_size") if isinstance(saved, dict) else None
    if recorded is None:
        return cfg
    per_block = cfg.patch_rows_per_block
    default = cfg.batch_size // per_block if cfg.batch_size % per_block == 0 else None
    if recorded != default:
        new = f"{cfg.batch_size}/{per_block} = {default}" if default else f"{cfg.batch_size}/{per_block}"
        _say(f"note: {Path(run_dir) / PLAN_FILE} was planned with {recorded} patch rows per step (a new run "
             f"dir's default: {new}); it resumes with its recorded plan")
    return dataclasses.replace(cfg, patch_batch_size=recorded)


def plan_record(cfg: TwoStageConfig, plans: Sequence[patch_cost.StagePlan], seed: int) -> dict:
    """What `two_stage.json` holds: the choices that fix the data each step reads."""
    stage1 = next((p for p in plans if p.index == 1), None)
    return {"token_budget": cfg.token_budget, "patch_size": cfg.patch_size, "patch_fraction": cfg.validate(),
            "sequence_length": cfg.sequence_length, "seed": seed,
            "patch_batch_size": stage1.batch_size if stage1 else None, "stages": [p.to_dict() for p in plans]}


def _check_plan(run_dir: Path, plan_record: dict) -> None:
    """A run dir belongs to one plan: resuming with a different budget/K/λ/batch would mix data."""
    saved = _read_json(run_dir / PLAN_FILE)
    if saved is not None:  # an older plan (renamed keys, B1 only per stage) reads in today's form
        saved = upgrade_plan_record(saved)
    if saved is not None and saved != plan_record:
        diffs = sorted(k for k in set(saved) | set(plan_record) if saved.get(k) != plan_record.get(k))
        raise UserError(f"{run_dir / PLAN_FILE} was written for a different two-stage plan (differs in "
                        f"{', '.join(diffs)}); use a new MODEL_DIR")
    _write_json(run_dir / PLAN_FILE, plan_record)


def check_stage_request(run_dir: str | os.PathLike, cfg: TwoStageConfig,
                        stage: int | None) -> list[patch_cost.StagePlan]:
    """Validate the config and the `--stage` request before any data is built; returns the plan
    (`cfg` as `resolve_config` gives it for this run dir)."""
    plans = resolve_config(run_dir, cfg).plan()
    by_index = {p.index: p for p in plans}
    if stage not in (None, 1, 2):
        raise UserError(f"--stage must be 1 or 2, got {stage!r}")
    if stage is not None and stage not in by_index:
        kind = "token-only" if 1 not in by_index else "patch-only"
        raise UserError(f"patch_fraction={cfg.patch_fraction} has no stage {stage} ({kind} run)")
    stage1 = by_index.get(1)
    if stage == 2 and stage1 is not None:
        stage1_dir = Path(run_dir) / stage1.name
        done = latest_checkpoint(stage1_dir)
        stage2_has_own = latest_checkpoint(Path(run_dir) / by_index[2].name) is not None
        if done != stage1.num_steps and not stage2_has_own:
            have = "no stage-1 checkpoint" if done is None else f"stage 1 only reached step {done}"
            raise UserError(f"cannot start stage 2: {have} in {stage1_dir} (needs step {stage1.num_steps}); "
                            "run stage 1 first (omit --stage or pass --stage=1)")
    return plans


# TrainerConfig fields the plan sets per stage; binding them in a two-stage run would be ignored.
PLAN_DERIVED_FIELDS = {"num_steps": "TOKEN_BUDGET (TwoStageConfig.token_budget)",
                       "batch_size": "BATCH_SIZE / PATCH_BATCH_SIZE (TwoStageConfig.batch_size, patch_batch_size)",
                       "sequence_length": "SEQUENCE_LENGTH (TwoStageConfig.sequence_length, patch_sequence_length)",
                       "patch_size": "PATCH_SIZE (TwoStageConfig.patch_size)"}


def check_base_trainer_config(base: TrainerConfig, cfg: TwoStageConfig) -> None:
    """Refuse TrainerConfig settings the two-stage plan would silently override."""
    defaults = TrainerConfig.__dataclass_fields__
    for name, owner in PLAN_DERIVED_FIELDS.items():
        value = getattr(base, name)
        if value is not None and value != defaults[name].default:
            raise UserError(f"trainer.TrainerConfig.{name}={value!r} has no effect in a two-stage run: each "
                            f"stage's {name} comes from {owner}; remove that binding")
    if base.eval_every and cfg.evals_per_stage > 1:
        raise UserError(f"both trainer.TrainerConfig.eval_every={base.eval_every} and "
                        f"two_stage_training.TwoStageConfig.evals_per_stage={cfg.evals_per_stage} say when to "
                        "validate; bind only one")


def stage_trainer_config(base: TrainerConfig, cfg: TwoStageConfig, plan: patch_cost.StagePlan) -> TrainerConfig:
    """One stage's trainer config: the gin-bound `base` with the plan's shape, steps and eval spacing."""
    check_base_trainer_config(base, cfg)
    every = base.eval_every
    if cfg.evals_per_stage > 1:
        every = max(1, -(-plan.num_steps // cfg.evals_per_stage))
    return dataclasses.replace(base, num_steps=plan.num_steps, batch_size=plan.batch_size,
                               sequence_length=plan.sequence_length, patch_size=plan.patch_size, eval_every=every)


def run_two_stage(run_dir: str | os.PathLike, *, model_config, cfg: TwoStageConfig, sources: StageSources,
                  trainer_config: TrainerConfig | None = None, eval_sets: Mapping[str, Any] | None = None,
                  optimizer_config=None, checkpoint_config=None, vocab_spec: dict | None = None, mesh=None,
                  stage: int | None = None, console: bool = True, hooks: Sequence[Any] = ()) -> TwoStageResult:
    """Run stage 1 then stage 2 (or only `stage`), resuming whatever is already in `run_dir`.

    `trainer_config` holds the settings both stages share (seed, logging, microbatches, eval caps);
    its plan-derived fields (steps, batch size, row length, K) must be left unset.
    """
    run = Run(Path(run_dir), model_config, mesh if mesh is not None else make_mesh(),
              optimizer_config or OptimizerConfig(), checkpoint_config, vocab_spec, tuple(hooks))
    return run_stages(run, cfg=cfg, sources=sources, trainer_config=trainer_config, eval_sets=eval_sets,
                      stage=stage, console=console)


def run_stages(run: Run, *, cfg: TwoStageConfig, sources: StageSources, trainer_config: TrainerConfig | None,
               eval_sets: Mapping[str, Any] | None, stage: int | None, console: bool = True) -> TwoStageResult:
    """`run_two_stage` inside a `Run` (the one training entry's: its mesh, shared settings and hooks)."""
    run_dir, model_config = run.run_dir, run.model_config
    base = trainer_config if trainer_config is not None else TrainerConfig()
    cfg = resolve_config(run_dir, cfg)
    plans = check_stage_request(run_dir, cfg, stage)
    check_base_trainer_config(base, cfg)
    lam = cfg.validate()
    seed = base.seed
    by_index = {p.index: p for p in plans}
    stage1 = by_index.get(1)
    stage1_dir = run_dir / stage1.name if stage1 else None
    _check_plan(run_dir, plan_record(cfg, plans, seed))
    for line in patch_cost.format_plan(plans, token_budget=cfg.token_budget, patch_fraction=lam,
                                       patch_size=cfg.patch_size):
        _say(line)

    # The block walk both stages share.
    rows_per_block = cfg.patch_stage_sequence_length // cfg.sequence_length
    # Open both row sets whenever the plan has both stages (even for `--stage=2`): the block count,
    # hence the walk, must not depend on which stage this invocation runs.
    patch_rows = sources.patch_rows() if stage1 is not None else None
    token_rows = sources.token_rows() if 2 in by_index else None
    if patch_rows is not None and token_rows is not None:
        sd.check_same_stream(patch_rows, token_rows, rows_per_block)
    num_blocks = sd.count_blocks(patch_rows, token_rows, rows_per_block)
    walk = sd.BlockWalk(num_blocks, seed)
    if stage1 is not None and stage1.num_steps * stage1.batch_size > num_blocks:
        _say(f"note: stage 1 needs {stage1.num_steps * stage1.batch_size} blocks but the corpus has "
             f"{num_blocks}; it repeats data (stage 2 then also starts inside a repeated epoch)")

    measured: dict[int, dict] = {}
    results: dict[int, dict] = {}
    for plan in plans:
        stage_dir = run_dir / plan.name
        measured[plan.index] = _read_json(stage_dir / STAGE_SUMMARY_FILE) or {"status": "not started"}
        results[plan.index] = {"status": measured[plan.index]["status"],
                               "eval": _read_json(stage_dir / EVAL_FILE)}
    _write_cost(run_dir, model_config, cfg, lam, plans, measured)

    for plan in plans:
        if stage is not None and plan.index != stage:
            continue
        stage_dir = run_dir / plan.name
        done = latest_checkpoint(stage_dir)
        if done == plan.num_steps and measured[plan.index].get("status") == "completed":
            _say(f"stage {plan.index} ({plan.name}) already completed at step {done}; skipping")
            continue
        initial_params = None
        if plan.index == 2 and stage1 is not None and done is None:
            s1 = latest_checkpoint(stage1_dir)
            if s1 != stage1.num_steps:
                have = "no stage-1 checkpoint" if s1 is None else f"stage 1 only reached step {s1}"
                raise UserError(f"cannot start stage 2: {have} in {stage1_dir} (needs step {stage1.num_steps})")
            initial_params = load_stage_params(stage1_dir, s1, model_config)
            _say(f"stage 2 starts from stage-1 params (step {s1}) with a fresh optimizer and schedule")
        if plan.index == 1:
            data = sd.PatchStageData(patch_rows, walk)
        else:
            skip = stage1.num_steps * stage1.batch_size if stage1 is not None else 0
            data = sd.TokenStageData(token_rows, walk, rows_per_block, skip)
        _say(f"== stage {plan.index} of 2 ({plan.name}): "
             f"{plan.num_steps} steps x {plan.batch_size} rows x {plan.sequence_length} tokens "
             f"(K={plan.patch_size}, {plan.network_length} positions in the network)")
        trainer = run.trainer(Stage(stage_trainer_config(base, cfg, plan), data, dict(eval_sets or {}), plan.name,
                                    initial_params), console=console)
        t0 = time.perf_counter()
        result = trainer.run()
        wall = time.perf_counter() - t0
        prev = measured.get(plan.index, {})
        measured[plan.index] = {
            "status": result.status, "final_step": result.final_step,
            "wall_s": (prev.get("wall_s") or 0.0) + wall, "eval_s": (prev.get("eval_s") or 0.0) + result.eval_seconds,
            "segments": (prev.get("segments") or 0) + 1}
        if result.status == "completed":
            # eval.json before the summary: a summary saying "completed" makes later runs skip the stage.
            evals = {name: dict(m) for name, m in result.eval_by_set.items()}
            _write_json(stage_dir / EVAL_FILE, {"step": result.final_step, "stage": plan.index,
                                                "eval": evals, "train_loss": result.last_metrics.get("loss")})
            results[plan.index] = {"status": "completed", "final_step": result.final_step, "eval": evals}
        else:
            results[plan.index] = {"status": result.status, "final_step": result.final_step}
        _write_json(stage_dir / STAGE_SUMMARY_FILE, measured[plan.index])
        cost = _write_cost(run_dir, model_config, cfg, lam, plans, measured)
        if result.status != "completed":
            _say(f"stage {plan.index} {result.status} at step {result.final_step}; rerun the same command to resume")
            return TwoStageResult(run_dir, results, cost)
    cost = _write_cost(run_dir, model_config, cfg, lam, plans, measured)
    return TwoStageResult(run_dir, results, cost)


def _write_cost(run_dir: Path, model_config, cfg: TwoStageConfig, lam: float, plans, measured) -> dict:
    cost = patch_cost.cost_report(model_config, plans, token_budget=cfg.token_budget, patch_fraction=lam,
                                  patch_size=cfg.patch_size, sequence_length=cfg.sequence_length,
                                  measured=measured)
    _write_json(run_dir / patch_cost.COST_FILE, cost)
    return cost


# -- gin entry point and CLI ---------------------------------------------------------------------
def wikitext_available() -> bool:
    return wikitext_test_file().is_file()


def build_eval_sets(eval_tasks: Mapping[str, str], *, sequence_length: int, vocab, seed: int,
                    cache_dir: str | None = None) -> dict[str, Any]:
    """Token-level validation sets by name; WikiText is skipped with a message if the shared copy is missing."""
    sets = {}
    for name, task in eval_tasks.items():
        if task == "wikitext" and not wikitext_available():
            _say(f"skipping validation set {name!r}: {wikitext_test_file()} not found "
                 f"(set PATCHTRAIN_SHARED_DATA to the shared data directory)")
            continue
        sets[name] = make_dataset(task=task, split="validation", sequence_length=sequence_length, vocab=vocab,
                                  seed=seed, patch_size=1, cache_dir=cache_dir)
    return sets


@dataclasses.dataclass
class TwoStagePlan:
    """Two-stage training as a plan for `training.train`: fail fast on the plan and the `--stage` request,
    build only the row sets and validation sets the plan needs, then `run_stages`."""
    two_stage_config: TwoStageConfig
    trainer_config: TrainerConfig
    vocab: Any
    train_task: str = "code_corpus"
    eval_tasks: Mapping[str, str] | None = None
    data_max_tokens: int | None = None
    cache_dir: str | None = None
    stage: int | None = None

    def prepare(self, run: Run) -> None:
        base = self.trainer_config
        self.cfg = cfg = resolve_config(run.run_dir, self.two_stage_config)
        plans = check_stage_request(run.run_dir, cfg, self.stage)  # before building any data
        check_base_trainer_config(base, cfg)
        common = dict(task=self.train_task, split="train", vocab=self.vocab, seed=base.seed, cache_dir=self.cache_dir,
                      max_tokens=self.data_max_tokens)
        # Only the row sets the plan has (a token-only baseline never builds the patch cache), built now so
        # that every gin-configured call has happened before the entry's unused-binding check.
        stages = {p.index for p in plans}
        patch_rows = (sd.dataset_rows(make_dataset(sequence_length=cfg.patch_stage_sequence_length,
                                                   patch_size=cfg.patch_size, **common)) if 1 in stages else None)
        token_rows = (sd.dataset_rows(make_dataset(sequence_length=cfg.sequence_length, patch_size=1, concat=True,
                                                   **common)) if 2 in stages else None)
        self.sources = StageSources(patch_rows=(lambda: patch_rows) if patch_rows is not None else None,
                                    token_rows=(lambda: token_rows) if token_rows is not None else None)
        self.eval_sets = build_eval_sets(self.eval_tasks if self.eval_tasks is not None else
                                         {"code": "code_corpus", "wikitext": "wikitext"},
                                         sequence_length=cfg.sequence_length, vocab=self.vocab, seed=base.seed,
                                         cache_dir=self.cache_dir)

    def execute(self, run: Run) -> TwoStageResult:
        return run_stages(run, cfg=self.cfg, sources=self.sources, trainer_config=self.trainer_config,
                          eval_sets=self.eval_sets, stage=self.stage)

    def summary(self, result: TwoStageResult) -> str:
        return summary_line(result)


@gin.configurable(module="two_stage_training")
def run_experiment(*, model_dir: str = gin.REQUIRED, model_config: Any = gin.REQUIRED,
                   two_stage_config: TwoStageConfig = gin.REQUIRED, trainer_config: TrainerConfig | None = None,
                   vocab: Any = None, train_task: str = "code_corpus", eval_tasks: Mapping[str, str] | None = None,
                   data_max_tokens: int | None = None, cache_dir: str | None = None,
                   optimizer_config: Any = None, checkpoint_config: Any = None,
                   mesh_shape: Sequence[int] | None = None, stage: int | None = None) -> TwoStageResult:
    """Two-stage training into `model_dir` (the gin entry `runs/two_stage.gin` binds): `TwoStagePlan`
    through `training.train`."""
    plan = TwoStagePlan(two_stage_config, trainer_config if trainer_config is not None else TrainerConfig(), vocab,
                        train_task, eval_tasks, data_max_tokens, cache_dir, stage)
    return train(model_dir=model_dir, model_config=model_config, stages=plan, vocab=vocab,
                 optimizer_config=optimizer_config, checkpoint_config=checkpoint_config, mesh_shape=mesh_shape)


def plan_lines(cfg: TwoStageConfig, model_dir: str | os.PathLike | None = None) -> list[str]:
    """The plan a run would train with, as printable lines: no data, no compile. With `model_dir`, an
    existing run dir's recorded B1 applies as it would on resume."""
    if model_dir:
        cfg = resolve_config(model_dir, cfg)
    return patch_cost.format_plan(cfg.plan(), token_budget=cfg.token_budget, patch_fraction=cfg.validate(),
                                  patch_size=cfg.patch_size)


def summary_line(result: TwoStageResult) -> str:
    parts = [f"run dir {result.run_dir}", f"relative cost {result.cost['relative_cost']:.3f}"]
    for index in sorted(result.stages):
        info = result.stages[index]
        evals = info.get("eval") or {}
        if isinstance(evals, dict) and "eval" in evals:  # read back from eval.json
            evals = evals["eval"]
        shown = ", ".join(f"{n} ppl {m['perplexity']:.2f}" for n, m in evals.items())
        parts.append(f"stage {index} {info.get('status')}" + (f" ({shown})" if shown else ""))
    return "; ".join(parts)
