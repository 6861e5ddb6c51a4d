"""The NLI judge: bidirectional entailment with a DeBERTa-MNLI-layout classifier from a local directory.

Input as the official code builds it: the two answers joined by the tokenizer's separator token, no
question (`with_question=True` puts the question in front of each answer, as Kuhn et al. do). The
entailment class is looked up in the model config's `id2label`, never assumed to be index 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from patch_training.errors import UserError


def entailment_index(id2label: dict) -> int:
    """The class index whose label names entailment (e.g. 'ENTAILMENT', 'entailment')."""
    hits = [int(i) for i, label in (id2label or {}).items()
            if str(label).strip().lower().startswith("entail")]
    if len(hits) != 1:
        raise UserError(f"NLI model config has no single entailment label in id2label={id2label!r}")
    return hits[0]


class NliJudge:
    name = "nli"

    def __init__(self, model_dir: str, *, with_question: bool = False, device: str = "cpu",
                 batch_size: int = 32):
        directory = Path(model_dir)
        if not (directory / "config.json").is_file():
            raise UserError(f"NLI model directory {directory} has no config.json")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(directory), local_files_only=True).to(device).eval()
        except Exception as e:  # transformers raises many kinds (OSError, ValueError, KeyError...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot load the NLI model from {directory}: {first}") from None
        self.entail = entailment_index(self.model.config.id2label)
        self.separator = self.tokenizer.sep_token or "[SEP]"
        self.with_question = with_question
        self.device = device
        self.batch_size = batch_size
        self._torch = torch

    def _text(self, a: str, b: str, question: str | None) -> str:
        if self.with_question and question:
            a, b = f"{question} {a}", f"{question} {b}"
        return f"{a} {self.separator} {b}"

    def entails(self, pairs: Sequence[tuple[str, str]], question: str | None = None) -> list[bool]:
        """For each (premise, hypothesis): is the predicted class entailment?"""
        out: list[bool] = []
        for start in range(0, len(pairs), self.batch_size):
            texts = [self._text(a, b, question) for a, b in pairs[start:start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
            with self._torch.no_grad():
                logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
            out.extend((logits.argmax(-1) == self.entail).tolist())
        return out

    def equivalence(self, answers: Sequence[str], question: str | None = None) -> np.ndarray:
        n = len(answers)
        # Each distinct ordered text pair is judged once; repeated answers reuse the verdict.
        uniq = sorted({(answers[i], answers[j]) for i in range(n) for j in range(n) if i != j})
        verdict = dict(zip(uniq, self.entails(uniq, question)))
        out = np.eye(n, dtype=bool)
        for i in range(n):
            for j in range(i + 1, n):
                both = verdict[(answers[i], answers[j])] and verdict[(answers[j], answers[i])]
                out[i, j] = out[j, i] = both
        return out
