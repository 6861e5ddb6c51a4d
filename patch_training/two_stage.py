"""`python -m patch_training.two_stage`: the two-stage CLI (kept at this path).

The method lives in `patch_training.two_stage_training` and the entry point in
`patch_training.main.two_stage`; this module re-exports both so `from patch_training.two_stage
import ...` and gin's `from patch_training import two_stage` keep working. It registers no gin
configurable itself, so running it as `__main__` registers nothing twice.
"""
from patch_training.errors import run_cli
from patch_training.main.two_stage import PROG, main, parse_experiment_gin  # noqa: F401
from patch_training.two_stage_training import (  # noqa: F401
    PLAN_DERIVED_FIELDS, StageSources, TwoStageConfig, TwoStageResult, build_eval_sets,
    check_base_trainer_config, check_stage_request, latest_checkpoint, load_stage_params, run_experiment,
    run_two_stage, stage_trainer_config, summary_line, wikitext_available)

if __name__ == "__main__":
    run_cli(main, prog=PROG)
