"""Models that check the harness itself (no weights): `oracle` and `rule_blind`.

Both are `ScriptedModel`s that look their prompt up in the list of (problem, setting) the run asked for:
- `oracle` answers under the variant's true rule: direct settings get the true answer in the task's format,
  `solverlearner` gets the rule written as a real `solver` function (run in the sandbox like any other);
  every cell must score 1.0.
- `rule_blind` always assumes the everyday rule (base 10, SVO, the default map, shift 0), in every setting, so
  it scores what the data's construction implies: 1.0 on the everyday variants, near 0 on counterfactual
  arithmetic (the files were drawn so that base-10 reading gives another sum).
A prompt that is not in the list gets an empty completion (a parse failure).
"""
from __future__ import annotations

from typing import Iterable

from evals.model_api import ScriptedModel
from evals.solverlearner.common import Problem
from evals.solverlearner.prompts import build_prompt
from evals.solverlearner.task_base import Task

HARNESS_BACKENDS = ("oracle", "rule_blind")


def harness_completion(kind: str, task: Task, problem: Problem, setting: str) -> str:
    variant = problem.variant if kind == "oracle" else task.everyday_variant
    if setting == "solverlearner":
        return task.rule_source(variant) + "```\n"
    answer = problem.gold if kind == "oracle" else task.solve(variant, problem.input)
    text = task.answer_text(answer)
    return f" {text}." if task.name == "arithmetic" else f" {text}"


def harness_model(kind: str, tasks: dict[str, Task], items: Iterable[tuple[Problem, str]]) -> ScriptedModel:
    if kind not in HARNESS_BACKENDS:
        raise ValueError(f"unknown harness backend {kind!r}")
    table = {}
    for problem, setting in items:
        task = tasks[problem.task]
        prompt, _ = build_prompt(task, problem, setting)
        table[prompt] = harness_completion(kind, task, problem, setting)
    return ScriptedModel(lambda prompt, _j: table.get(prompt, ""), name=f"solverlearner-{kind}")
