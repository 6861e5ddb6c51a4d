"""Shared fixtures for the DynamicQA tests: a scripted model that also returns log-probs and
vocabulary distributions (what the in-process backend gives), and a small CSV folder."""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import pytest

from evals.model_api import Completion, Sampling, fingerprint_of

VOCAB = 16


class DistScriptedModel:
    """`respond(prompt, j) -> text`; log-probs and the mean distribution derive from (prompt, j)."""

    def __init__(self, respond: Callable[[str, int], str], vocab: int = VOCAB):
        self.respond = respond
        self.vocab = vocab
        self.prompts_seen: list[str] = []

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("dist-scripted")

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        out = []
        for p in prompts:
            self.prompts_seen.append(p)
            row = []
            for j in range(n):
                seed = int.from_bytes(hashlib.sha256(f"{p}|{j}|{sampling.seed}".encode()).digest()[:4], "little")
                logits = np.random.default_rng(seed).normal(size=self.vocab)
                dist = np.exp(logits) / np.exp(logits).sum()
                row.append(Completion(text=self.respond(p, j), token_ids=[1, 2],
                                      token_logprobs=[-0.5 * (1 + j % 3), -0.25],
                                      mean_dist=dist.astype(np.float32)))
            out.append(row)
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError


STATIC_CSV = (
    ",id,subj,prop,obj,question,possible_answers,context,replace_name\n"
    '0,1,Ann Lee,occupation,journalist,What is Ann Lee\'s occupation?,"[""journalist""]",Ann Lee was a [ENTITY].,actor\n'
    '1,2,Bob Ray,occupation,politician,What is Bob Ray\'s occupation?,"[""politician""]",Bob Ray was a [ENTITY] in Ohio.,judge\n'
    '2,3,Cy Dee,occupation,painter,What is Cy Dee\'s occupation?,"[]",Cy Dee painted things.,singer\n'
)


@pytest.fixture
def small_data_dir(tmp_path):
    d = tmp_path / "dqa"
    d.mkdir()
    (d / "Static_final.csv").write_text(STATIC_CSV)
    return d
