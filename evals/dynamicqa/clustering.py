"""Group sampled answers into meaning classes from a pairwise equivalence matrix.

`complete_link_groups` is the correct grouping: a partition where every member is equivalent to every
other member (greedy, in sample order: a sample joins the first group all of whose members it matches,
else starts a new one). `official_groups` reproduces the official DynamicQA code, which starts one
cluster from every sample and, when adding a candidate, looks only at the cluster's most recently
added member; its clusters can overlap and can hold non-equivalent pairs. `official_partition` is how
the official semantic-entropy script turns those clusters into one label per sample (a later cluster
overwrites an earlier one).
"""
from __future__ import annotations

import numpy as np


def _check(equiv: np.ndarray) -> np.ndarray:
    equiv = np.asarray(equiv, dtype=bool)
    if equiv.ndim != 2 or equiv.shape[0] != equiv.shape[1]:
        raise ValueError(f"equivalence must be a square matrix, got shape {equiv.shape}")
    return equiv


def complete_link_groups(equiv: np.ndarray) -> list[list[int]]:
    """A partition of range(n) in which every pair inside a group is equivalent."""
    equiv = _check(equiv)
    groups: list[list[int]] = []
    for i in range(len(equiv)):
        for group in groups:
            if all(equiv[i, m] and equiv[m, i] for m in group):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def official_groups(equiv: np.ndarray) -> list[list[int]]:
    """The official clustering, quirk included; sorted for a stable order (theirs is set order)."""
    equiv = _check(equiv)
    n = len(equiv)
    # Mutual equivalence lists, as the official code builds them from both NLI directions.
    partners = {i: [j for j in range(n) if j != i and equiv[i, j] and equiv[j, i]] for i in range(n)}
    clusters = set()
    for i in range(n):
        cluster = [i]
        for candidate in partners[i]:
            last = cluster[-1]   # the quirk: only the latest member is checked
            if last in partners[candidate] and candidate in partners[last]:
                cluster.append(candidate)
        clusters.add(tuple(sorted(cluster)))
    return [list(c) for c in sorted(clusters)]


def official_partition(groups: list[list[int]], n: int) -> list[list[int]]:
    """One label per sample as the official SE script assigns it (last cluster containing it wins)."""
    label = np.zeros(n, dtype=int)
    for g, members in enumerate(groups):
        for m in members:
            label[m] = g
    out: dict[int, list[int]] = {}
    for i, g in enumerate(label):
        out.setdefault(int(g), []).append(i)
    return [out[g] for g in sorted(out)]
