"""Prompts for the four settings (REFERENCE §3), in our own words, following the paper's shapes.

- deductive_zeroshot: task, the rule, the answer format, the query.
- deductive_fewshot: the same, plus `n_shots` demonstrations that each restate the rule before their answer.
- inductive_fewshot: task, answer format, the demonstrations (no rule), the query.
- solverlearner: task, the same demonstrations, then a request for `solver`; the prompt ends with an opened
  ```python fence, so a base model continues with code and a chat model may open its own.

Every direct-answer prompt ends with the query's answer lead (e.g. "The result for 34+25 is"), which is also
what a parser puts back in front of the completion. `build_prompt` returns (prompt, lead); `lead_prompt` the
prompt as a `LeadPrompt`, whose last line a chat model finds already written in its own turn.
"""
from __future__ import annotations

from evals.model_api import LeadPrompt
from evals.solverlearner.common import ENTRY, SETTINGS, Problem
from evals.solverlearner.task_base import Task

CODE_LEAD = "```python\n"


def build_prompt(task: Task, problem: Problem, setting: str) -> tuple[str, str]:
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}")
    v = problem.variant
    parts = [task.task_intro()]
    deductive = setting.startswith("deductive")
    if deductive:
        parts.append(task.rule_text(v))
    if setting != "solverlearner":
        parts.append(f"Write the answer in the form: {task.answer_format}")
    blocks = []
    if setting != "deductive_zeroshot":
        for inp, ans in problem.demos:
            note = task.rule_note(v, inp) if setting == "deductive_fewshot" else None
            blocks.append(task.example_text(inp, ans, note))
    if setting == "solverlearner":
        request = (f"Write a Python function `{task.solver_signature}` that maps every input above to its output "
                   f"({task.solver_doc}). It will be run on new inputs of the same kind. Reply with the whole "
                   f"function, named `{ENTRY}`, in one Python code block.")
        text = "\n\n".join(["\n".join(parts), "\n\n".join(blocks), request]) + "\n" + CODE_LEAD
        return text, CODE_LEAD
    note = task.rule_note(v, problem.input) if setting == "deductive_fewshot" else None
    blocks.append(task.example_text(problem.input, None, note))
    return "\n".join(parts) + "\n\n" + "\n\n".join(blocks), task.answer_lead_for(problem.input)


def lead_prompt(task: Task, problem: Problem, setting: str) -> LeadPrompt:
    """The prompt with its answer lead marked: with chat formatting the prompt's last line (the query that ends in
    the lead, or the opened python fence) opens the assistant turn, so a chat model continues the answer as a
    completion model does, and the parsers read both the same way."""
    text, lead = build_prompt(task, problem, setting)
    body = text[:-1] if text.endswith("\n") else text      # a fence lead ends with its newline
    tail = text[body.rfind("\n") + 1:]
    return LeadPrompt(text, tail if lead.strip() and lead.strip().lower() in tail.lower() else "")
