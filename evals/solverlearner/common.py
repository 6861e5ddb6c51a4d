"""Shared pieces of the SolverLearner eval: the problem record, the settings, and answer extraction.

Every task module (arithmetic, syntax, spatial, cipher) builds `Problem`s and knows its own answer format;
what is common to all of them lives here: `\\boxed{...}` extraction and the rule that finds the model's
Python function in a completion.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

SETTINGS = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot", "solverlearner")
ENTRY = "solver"  # the function name a SolverLearner completion must define
# What may open a word an answer format names (`Plaintext: "owes"`, `subject = **mary**`): chat models quote or
# bold their answers, and the parsers read past it rather than count a right answer as a parse failure.
OPENING_QUOTES = r"[\"'`*“‘]*"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One query of one task variant. `index` is the 0-based line of the task's data file."""

    task: str
    variant: str
    index: int
    input: Any                          # task-specific, JSON-able (what `solver` receives, pre-kwargs)
    gold: Any                           # the answer under the variant's rule
    demos: tuple = ()                   # ((input, answer), ...) demonstrations, in prompt order
    meta: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.task}/{self.variant}/{self.index}"


def split_id(problem_id: str) -> tuple[str, str, int] | None:
    """'arithmetic/base9/17' -> ('arithmetic', 'base9', 17); None when it has another shape."""
    parts = problem_id.split("/") if isinstance(problem_id, str) else []
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def first_boxed(text: str) -> str | None:
    """Content of the first `\\boxed{...}`, braces balanced; None when there is none (or it never closes)."""
    start = text.find("\\boxed{")
    while start != -1:
        i = start + len("\\boxed{")
        depth = 1
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i:j]
        start = text.find("\\boxed{", start + 1)
    return None


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_DEFINES_ENTRY = re.compile(rf"^\s*def\s+{ENTRY}\s*\(", re.MULTILINE)


def extract_code(text: str) -> str | None:
    """The model's function: the first fenced block that defines `solver` (an unclosed last fence runs to
    the end of the text); with no fence at all, the whole text when it defines `solver`. None = no code.

    Only blocks that define the entry count, so an empty fence a chat model opens after our prompt's own
    "```python" lead does not hide the code that follows it.
    """
    for m in _FENCE.finditer(text):
        if _DEFINES_ENTRY.search(m.group(1)):
            return m.group(1).rstrip() + "\n"
    if "```" not in text and _DEFINES_ENTRY.search(text):
        return text.rstrip() + "\n"
    return None


def extract_solver(completion: str, lead: str) -> str | None:
    """The `solver` in a completion of a prompt that ends with `lead` (an opened "```python" fence).

    A base model continues the lead, so the prompt's fence and the completion are read together. A chat model
    answers afresh and opens its own fence ("```python\ndef solver..."): read together with the lead, that
    fence would close the lead's empty block and the code would sit outside any block. So the completion is
    read both ways: as a continuation first, then on its own.
    """
    return extract_code(lead + completion) or extract_code(completion)
