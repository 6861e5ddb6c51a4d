"""Keep the Case2Code test set's functions out of our data: normalised-AST equality or heavy token n-gram
overlap with any test function drops a harvested function."""
from __future__ import annotations

import ast
import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

from case2code_finetune.dedup import code_tokens
from case2code_finetune.function_filters import normalised_dump

NGRAM = 8
OVERLAP_THRESHOLD = 0.5  # share of the candidate's n-grams found in one test function


def _ngrams(source: str) -> set[tuple[str, ...]]:
    toks = code_tokens(source)
    return {tuple(toks[i:i + NGRAM]) for i in range(max(len(toks) - NGRAM + 1, 0))}


class Decontaminator:
    def __init__(self, test_codes: list[str], *, threshold: float = OVERLAP_THRESHOLD):
        self.threshold = threshold
        self.dumps: set[str] = set()
        self.index: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.n_functions = 0
        for k, code in enumerate(test_codes):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
            if tree is not None:
                for node in tree.body:
                    if isinstance(node, ast.FunctionDef):
                        self.dumps.add(normalised_dump(node))
                        self.n_functions += 1
            for g in _ngrams(code):
                self.index[g].add(k)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, **kw) -> "Decontaminator":
        codes = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    codes.append(json.loads(line)["code"])
                except (ValueError, KeyError, TypeError):
                    continue
        return cls(codes, **kw)

    def reason(self, fn: ast.FunctionDef, source: str) -> str | None:
        """'decontam_ast' / 'decontam_ngram' when `fn` is (close to) a test function, else None."""
        if normalised_dump(fn) in self.dumps:
            return "decontam_ast"
        grams = _ngrams(source)
        if not grams:
            return None
        hits: dict[int, int] = defaultdict(int)
        for g in grams:
            for k in self.index.get(g, ()):
                hits[k] += 1
        if hits and max(hits.values()) / len(grams) >= self.threshold:
            return "decontam_ngram"
        return None


def default_test_set() -> Path | None:
    from patch_training.shared_data import shared_data_dir  # noqa: PLC0415 - only where the data is needed
    p = Path(shared_data_dir()) / "case2code" / "test.jsonl"
    return p if p.exists() else None
