"""SolverLearner (REFERENCE §3): inductive vs deductive reasoning on counterfactual tasks, with the functions a
model learns executed in the sandbox.

Tasks (each with its rule as code): `arithmetic`, `syntax`, `spatial`, `cipher` (see their modules for data,
variants, answer formats and the `solver` signature). Settings: `common.SETTINGS`. Stages: `pipeline.generate`
-> `pipeline.score` (`scoring.judge_predictions` + `scoring.aggregate` -> `record`) -> `report`. CLI: `cli.py`.
Harness checks: `harness_backends` (`oracle`, `rule_blind`).

A run directory (`--out`) holds: `run.json` (model fingerprint, sampling, n_shots, cipher options; a rerun
with other values is refused), `predictions.jsonl` (`{"id": "<task>/<variant>/<index>", "setting",
"completion", "finish_reason"}`; resumed line by line), `exec_journal.jsonl` (sandbox results, resumed),
`judged.jsonl` (parsed answer, parse_failure, exec_status, correct, per line), `record.json` (the EvalRecord:
`record` builds it), `results.md` and `chart.png` (human views), `gen_cache/` (the generation cache).
"""
from evals.solverlearner.common import ENTRY, SETTINGS, Problem, extract_code, first_boxed
from evals.solverlearner.tasks import TASK_NAMES, ProblemBank, make_tasks, parse_task_specs

__all__ = ["ENTRY", "SETTINGS", "TASK_NAMES", "Problem", "ProblemBank", "extract_code", "first_boxed",
           "make_tasks", "parse_task_specs"]
