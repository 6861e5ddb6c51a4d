"""The DynamicQA formulas (REFERENCE §4): semantic entropy, coherent persuasion, persuaded / stubborn."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

SE_SHIFT = 5.0           # the constant log-likelihood shift carried over from Kuhn et al.
ROUGE_CORRECT = 0.3      # ROUGE-L F1 above this counts as the same answer


def semantic_entropy(mean_nlls: Sequence[float], groups: Sequence[Sequence[int]]) -> float | None:
    """SE = 5 − mean over groups of logsumexp over members of (−mean NLL).

    Samples with a non-finite NLL (an empty answer has none) are left out of their group; a group left
    empty is dropped; None when nothing is left.
    """
    nll = np.asarray(mean_nlls, dtype=np.float64)
    per_group = []
    for members in groups:
        values = -nll[[m for m in members if np.isfinite(nll[m])]]
        if len(values):
            top = values.max()
            per_group.append(top + np.log(np.exp(values - top).sum()))
    if not per_group:
        return None
    return float(SE_SHIFT - np.mean(per_group))


def kl_dropping_invalid(p: np.ndarray, q: np.ndarray) -> float:
    """Σ_v p_v log(p_v / q_v) with infinite or NaN terms dropped (as the official code masks them).

    Terms follow scipy's rel_entr: 0 where p_v = 0 (and q_v >= 0), +inf where p_v > 0 and q_v = 0 or
    either is negative.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in length: {p.shape} vs {q.shape}")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.where((p > 0) & (q > 0), p * np.log(p / q), np.inf)
        terms = np.where((p == 0) & (q >= 0), 0.0, terms)
    terms = np.where(np.isnan(p) | np.isnan(q), np.nan, terms)
    return float(terms[np.isfinite(terms)].sum())


def group_distribution(dists: Sequence[np.ndarray], members: Sequence[int]) -> np.ndarray:
    return np.mean([np.asarray(dists[m], dtype=np.float64) for m in members], axis=0)


def coherent_persuasion(context_dists: Sequence[np.ndarray], context_groups: Sequence[Sequence[int]],
                        qonly_dists: Sequence[np.ndarray], qonly_groups: Sequence[Sequence[int]]
                        ) -> tuple[float, list[float]]:
    """(CP, the KL of every (context group, q-only group) pair): CP is the mean of KL(P_C ‖ Q_D)."""
    ps = [group_distribution(context_dists, g) for g in context_groups]
    qs = [group_distribution(qonly_dists, g) for g in qonly_groups]
    kls = [kl_dropping_invalid(p, q) for p in ps for q in qs]
    if not kls:
        raise ValueError("coherent persuasion needs at least one group on each side")
    return float(np.mean(kls)), kls


def clean_answer(text: str) -> str:
    """The official normalisation before ROUGE: lower-case, drop 'assistant:', 'answer' and ':'."""
    text = text.lower().replace("assistant:", "").strip()
    return text.replace("answer", "").replace(":", "")


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_f1(a: str, b: str) -> float:
    return float(_scorer().score(b, a)["rougeL"].fmeasure)


def is_correct(answer: str, gold: str) -> bool:
    """ROUGE-L F1 of the cleaned answer against the gold answer > 0.3."""
    return rouge_l_f1(clean_answer(answer), gold) > ROUGE_CORRECT


def persuaded(context_answer: str, gold: str) -> bool:
    """The answer given with the context is correct (matches the gold of that context)."""
    return is_correct(context_answer, gold)


def stubborn(context_answer: str, qonly_answer: str, gold: str) -> bool:
    """Wrong with the context, and the same (ROUGE-L > 0.3, both cleaned) as the q-only answer."""
    if is_correct(context_answer, gold):
        return False
    return rouge_l_f1(clean_answer(context_answer), clean_answer(qonly_answer)) > ROUGE_CORRECT
