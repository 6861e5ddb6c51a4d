"""95% intervals for the report's numbers: Wilson for proportions (pass@1, accuracy), a percentile bootstrap for
means over items (DynamicQA's SE and CP). The demo's slices are small, so every number needs one."""
from __future__ import annotations

import math


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (sensible at k = 0 or n, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a mean (seeded: the report reads the same on every rebuild)."""
    import numpy as np
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
