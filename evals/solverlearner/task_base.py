"""What every SolverLearner task provides (the contract `prompts`, `scoring` and the harness backends use).

A task owns: its variants and where their data comes from, the rule of each variant (as a sentence for the
deductive prompts, as Python for the oracle, and as the "everyday" rule for the rule-blind check), the text
shape of one example, the answer parser, and the judge.
"""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

from evals.solverlearner.common import Problem
from patch_training.errors import UserError


class UnknownVariant(UserError):
    """A variant name the task does not have (a bad predictions line is counted; a bad flag is one line)."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The judgement of one parsed answer. `parts` > 1 for spatial (objects in the room)."""

    correct: bool
    parts_correct: int = 0
    parts: int = 1


class Task(abc.ABC):
    name: str = ""
    everyday_variant: str = ""          # the variant whose rule is the everyday one (base10, svo, ...)
    default_variants: tuple[str, ...] = ()
    solver_signature: str = ""          # shown in the SolverLearner prompt
    solver_doc: str = ""                # what the function receives and must return, in words
    answer_lead: str = "Answer:"        # the last words of a direct-answer prompt
    answer_format: str = ""             # how an answer is written, shown in prompts without the rule

    # ---- data
    @abc.abstractmethod
    def check_variant(self, variant: str) -> None:
        """Raise UserError naming the known variants when `variant` is not one."""

    @abc.abstractmethod
    def load(self, variant: str, data_dir: Path, n_shots: int) -> list[Problem]:
        """All problems of a variant, in data-file order, each with `n_shots` demonstrations."""

    # ---- the rule
    @abc.abstractmethod
    def rule_text(self, variant: str) -> str:
        """The rule, stated for the deductive prompts."""

    @abc.abstractmethod
    def rule_note(self, variant: str, inp: Any) -> str:
        """A short restatement of the rule applied to one demonstration (deductive few-shot)."""

    @abc.abstractmethod
    def solve(self, variant: str, inp: Any) -> Any:
        """The ground truth: the answer to `inp` under the variant's rule."""

    @abc.abstractmethod
    def rule_source(self, variant: str) -> str:
        """Python source defining `solver` that implements the variant's rule (the oracle's answer)."""

    # ---- text
    @abc.abstractmethod
    def task_intro(self) -> str:
        """One paragraph saying what the task is (without the rule)."""

    @abc.abstractmethod
    def example_text(self, inp: Any, answer: Any | None, note: str | None = None) -> str:
        """One example block; with `answer=None` the query, ending with `answer_lead_for(inp)`."""

    def answer_lead_for(self, inp: Any) -> str:
        return self.answer_lead

    @abc.abstractmethod
    def answer_text(self, answer: Any) -> str:
        """How an answer is written (demonstrations, oracle replies)."""

    @abc.abstractmethod
    def parse(self, completion: str, problem: Problem) -> Any | None:
        """The answer in a completion of a direct-answer prompt (which ended with the query's answer lead);
        None when nothing parses."""

    @abc.abstractmethod
    def solver_kwargs(self, problem: Problem) -> dict:
        """Keyword arguments of the `solver` call for this problem's query."""

    @abc.abstractmethod
    def from_solver_output(self, value: Any, problem: Problem) -> Any | None:
        """A `solver` return value turned into an answer; None when it has the wrong type or shape."""

    @abc.abstractmethod
    def judge(self, answer: Any, problem: Problem) -> Verdict:
        """Whether a (non-None) answer is right."""
