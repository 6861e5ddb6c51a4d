"""The task registry and the `task[:variant,variant...]` selection the CLI takes."""
from __future__ import annotations

from pathlib import Path

from evals.solverlearner.arithmetic import ArithmeticTask
from evals.solverlearner.cipher import CipherTask
from evals.solverlearner.common import SETTINGS, Problem
from evals.solverlearner.spatial import SpatialTask
from evals.solverlearner.syntax import SyntaxTask
from evals.solverlearner.task_base import Task, UnknownVariant
from patch_training.errors import UserError

TASK_NAMES = ("arithmetic", "syntax", "spatial", "cipher")


def make_tasks(*, cipher_words: int = 100, cipher_seed: int = 0) -> dict[str, Task]:
    return {"arithmetic": ArithmeticTask(), "syntax": SyntaxTask(), "spatial": SpatialTask(),
            "cipher": CipherTask(cipher_words, cipher_seed)}


def parse_task_specs(specs: list[str], tasks: dict[str, Task]) -> list[tuple[str, str]]:
    """['arithmetic', 'spatial:r90,vflip'] -> [(task, variant), ...]; a bare task means its default variants."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, _, variants = spec.partition(":")
        if name not in tasks:
            raise UserError(f"unknown task {name!r} in --tasks {spec!r}; known: {', '.join(TASK_NAMES)}")
        task = tasks[name]
        chosen = [v for v in variants.split(",") if v] if variants else list(task.default_variants)
        for v in chosen:
            task.check_variant(v)
            if (name, v) not in out:
                out.append((name, v))
    return out


def check_settings(settings: list[str]) -> list[str]:
    for s in settings:
        if s not in SETTINGS:
            raise UserError(f"unknown setting {s!r}; known: {', '.join(SETTINGS)}")
    return list(dict.fromkeys(settings))


class ProblemBank:
    """Loads each (task, variant) once and finds problems by id (the score stage looks ids up here)."""

    def __init__(self, tasks: dict[str, Task], data_dir: Path, n_shots: int):
        self.tasks = tasks
        self.data_dir = Path(data_dir)
        self.n_shots = n_shots
        self._loaded: dict[tuple[str, str], list[Problem]] = {}

    def problems(self, task: str, variant: str) -> list[Problem]:
        key = (task, variant)
        if key not in self._loaded:
            if task not in self.tasks:
                raise UserError(f"unknown task {task!r}; known: {', '.join(TASK_NAMES)}")
            self.tasks[task].check_variant(variant)
            self._loaded[key] = self.tasks[task].load(variant, self.data_dir, self.n_shots)
        return self._loaded[key]

    def lookup(self, task: str, variant: str, index: int) -> Problem | None:
        """The problem, or None when the task, variant or index does not exist (counted by the caller)."""
        if task not in self.tasks:
            return None
        try:
            probs = self.problems(task, variant)
        except UnknownVariant:
            return None  # absent data still raises: that is the user's to fix, not a bad line
        return probs[index] if 0 <= index < len(probs) else None
