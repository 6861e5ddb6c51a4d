"""Duplicate removal at three levels: exact (normalised AST), near (MinHash-LSH over token shingles),
behavioural (the same input -> output table after execution)."""
from __future__ import annotations

import hashlib
import json
import re

from datasketch import MinHash, MinHashLSH

TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+|\S")
SHINGLE = 5
NUM_PERM = 64
NEAR_THRESHOLD = 0.85


def code_tokens(source: str) -> list[str]:
    return TOKEN_RE.findall(source)


def shingles(tokens: list[str], k: int = SHINGLE) -> set[str]:
    if len(tokens) < k:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}


class NearDuplicateIndex:
    """First come, first kept: `seen_similar(key, source)` is True when an earlier source is estimated to
    have Jaccard similarity >= threshold over token shingles; otherwise the source is added."""

    def __init__(self, threshold: float = NEAR_THRESHOLD, num_perm: int = NUM_PERM):
        self.num_perm, self.threshold = num_perm, threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.hashes: dict[str, MinHash] = {}

    def seen_similar(self, key: str, source: str) -> bool:
        mh = MinHash(num_perm=self.num_perm, seed=1)
        mh.update_batch([s.encode() for s in shingles(code_tokens(source))])
        # LSH buckets give candidates; the MinHash estimate of Jaccard decides (tiny functions collide often).
        if any(mh.jaccard(self.hashes[k]) >= self.threshold for k in self.lsh.query(mh)):
            return True
        self.lsh.insert(key, mh)
        self.hashes[key] = mh
        return False


def behaviour_key(inputs: list[str], outputs: list[dict]) -> str:
    """Hash of the sorted (input, outcome) table: functions with the same table behave the same on it."""
    table = sorted(json.dumps([i, o], sort_keys=True) for i, o in zip(inputs, outputs))
    return hashlib.sha1("\n".join(table).encode()).hexdigest()
