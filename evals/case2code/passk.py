"""pass@k estimators.

- `unbiased_pass_at_k(n, c, k)`: the HumanEval estimator 1 - C(n-c, k) / C(n, k), the probability that at
  least one of k samples drawn without replacement from the n is correct;
- `first_k_pass(flags, k)`: the official Case2Code harness's figure: a problem counts if any of its first k
  samples (in file order) is correct.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # product form avoids huge binomials: C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def first_k_pass(flags: Sequence[bool], k: int) -> bool:
    return any(flags[:k])


def summarize(per_problem: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict:
    """Mean over problems of both figures for each k that every problem has samples for."""
    out = {}
    n_min = min((len(f) for f in per_problem), default=0)
    for k in ks:
        if k > n_min or not per_problem:
            continue
        out[f"pass@{k}"] = float(np.mean([unbiased_pass_at_k(len(f), sum(f), k) for f in per_problem]))
        out[f"first_{k}_pass"] = float(np.mean([first_k_pass(f, k) for f in per_problem]))
    return out
