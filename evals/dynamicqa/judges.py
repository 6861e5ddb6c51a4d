"""Pluggable answer-equivalence judges: `exact`, `rouge` here; `nli` and `embedding` (torch) lazily.

A judge answers `equivalence(answers, question) -> bool[n, n]`: whether answers i and j mean the same
thing. Only that matrix reaches the clustering, so every judge can use the correct or the official
grouping.
"""
from __future__ import annotations

import re
import string
from typing import Protocol, Sequence

import numpy as np

from patch_training.errors import UserError

JUDGES = ("nli", "embedding", "exact", "rouge")


class Judge(Protocol):
    name: str

    def equivalence(self, answers: Sequence[str], question: str | None = None) -> np.ndarray:
        ...


def normalise(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _pairwise(answers: Sequence[str], same) -> np.ndarray:
    n = len(answers)
    out = np.eye(n, dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = bool(same(answers[i], answers[j]))
    return out


class ExactJudge:
    name = "exact"

    def equivalence(self, answers: Sequence[str], question: str | None = None) -> np.ndarray:
        keys = [normalise(a) for a in answers]
        return _pairwise(keys, lambda a, b: a == b)


class RougeJudge:
    """ROUGE-L F1 (rouge-score, stemmed) above a threshold; symmetric, so one call per pair."""
    name = "rouge"

    def __init__(self, threshold: float = 0.3):
        self.threshold = threshold

    def equivalence(self, answers: Sequence[str], question: str | None = None) -> np.ndarray:
        from evals.dynamicqa.scores import rouge_l_f1
        return _pairwise(list(answers), lambda a, b: rouge_l_f1(a, b) > self.threshold)


def make_judge(name: str, *, nli_dir: str | None = None, nli_with_question: bool = False,
               embedding_threshold: float = 0.8, rouge_threshold: float = 0.3,
               cache_dir: str | None = None, device: str = "cpu", batch_size: int = 32) -> Judge:
    """Build a judge by name; heavy ones import torch only here."""
    if name == "exact":
        return ExactJudge()
    if name == "rouge":
        return RougeJudge(rouge_threshold)
    if name == "nli":
        if not nli_dir:
            raise UserError("--judge nli needs --nli_dir (a local DeBERTa-MNLI directory); "
                            "or choose --judge embedding|exact|rouge")
        from evals.dynamicqa.nli_judge import NliJudge
        return NliJudge(nli_dir, with_question=nli_with_question, device=device, batch_size=batch_size)
    if name == "embedding":
        from evals.dynamicqa.embedding_judge import EmbeddingJudge
        return EmbeddingJudge(threshold=embedding_threshold, cache_dir=cache_dir, device=device)
    raise UserError(f"unknown judge {name!r}; choose from {', '.join(JUDGES)}")
