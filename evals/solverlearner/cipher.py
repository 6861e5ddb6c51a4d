"""Decrypt a word enciphered with a shift (Caesar) cipher whose shift the model is not told.

No public data exists for this task, so it is generated deterministically: the English words are the distinct
all-lower-case alphabetic tokens of 4 to 10 letters in `wikitext/wikitext_document_level-test.json`, sorted,
then `random.Random(seed).sample(words, n_words)` (defaults: seed 0, 100 words). Every shift uses the same
words, so variants differ only in their rule. Variant `shift{k}` (0 <= k <= 25) enciphers each letter k
places forward (z wraps to a); `shift0` is the everyday rule (the identity), `shift13` is ROT13. The index of a
problem is the word's position in that sample. Demonstrations: `n_shots` other words, seeded by the problem id.

Answer format: `Plaintext: word`. Parsing: the first `\\boxed{...}` (its first word); else the first
"Plaintext: word" in "Plaintext:" + completion, the word possibly quoted (`"owes"`, as chat models write it).
Words compare lower-cased.
`solver(text: str) -> str`: the ciphertext in, the plaintext out.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from evals.solverlearner.common import OPENING_QUOTES, Problem, first_boxed
from evals.solverlearner.task_base import Task, UnknownVariant, Verdict
from patch_training.errors import UserError

DEFAULT_SHIFTS = (0, 3, 7, 13, 20)
_VARIANT = re.compile(r"^shift(\d{1,2})$")
_WORD = re.compile(r"^[a-z]{4,10}$")

_SOLVER_TEMPLATE = '''SHIFT = {shift}


def solver(text: str) -> str:
    out = []
    for c in text.strip().lower():
        out.append(chr((ord(c) - ord("a") - SHIFT) % 26 + ord("a")) if "a" <= c <= "z" else c)
    return "".join(out)
'''


def shift_text(text: str, k: int) -> str:
    return "".join(chr((ord(c) - 97 + k) % 26 + 97) if "a" <= c <= "z" else c for c in text.lower())


def parse_variant(variant: str) -> int:
    m = _VARIANT.match(variant)
    if not m or int(m.group(1)) > 25:
        raise UnknownVariant(f"cipher: unknown variant {variant!r}; known: shift0 .. shift25")
    return int(m.group(1))


def english_words(data_dir: Path, n_words: int, seed: int) -> list[str]:
    path = data_dir / "wikitext" / "wikitext_document_level-test.json"
    if not path.is_file():
        raise UserError(f"cipher: word source {path} is missing (see ../shared/data/README.md)")
    words = set()
    for line in path.read_text().splitlines():
        try:
            text = json.loads(line).get("text", "")
        except (ValueError, AttributeError):
            continue
        words.update(t for t in text.split() if _WORD.match(t))
    ordered = sorted(words)
    if len(ordered) < n_words:
        raise UserError(f"cipher: only {len(ordered)} distinct words in {path}, {n_words} asked for")
    return random.Random(seed).sample(ordered, n_words)


class CipherTask(Task):
    name = "cipher"
    everyday_variant = "shift0"
    default_variants = tuple(f"shift{k}" for k in DEFAULT_SHIFTS)
    solver_signature = "def solver(text: str) -> str"
    solver_doc = "`text` is the ciphertext as written above; return the plaintext"
    answer_format = "Plaintext: word"
    answer_lead = "Plaintext:"

    def __init__(self, n_words: int = 100, seed: int = 0):
        self.n_words = n_words
        self.seed = seed
        self._words: list[str] | None = None

    def check_variant(self, variant: str) -> None:
        parse_variant(variant)

    def load(self, variant: str, data_dir: Path, n_shots: int) -> list[Problem]:
        k = parse_variant(variant)
        if self._words is None:
            self._words = english_words(data_dir, self.n_words, self.seed)
        words = self._words
        problems = []
        for i, w in enumerate(words):
            rng = random.Random(f"cipher/{variant}/{i}")
            others = [j for j in range(len(words)) if j != i]
            picks = rng.sample(others, min(n_shots, len(others)))
            demos = tuple((shift_text(words[j], k), words[j]) for j in picks)
            problems.append(Problem(self.name, variant, i, shift_text(w, k), w, demos, {"shift": k}))
        return problems

    def rule_text(self, variant: str) -> str:
        k = parse_variant(variant)
        return (f"Each word was encrypted with a shift cipher: every letter was moved {k} places forward in the "
                f"alphabet, wrapping around from z to a. Decrypt it by moving every letter {k} places back.")

    def rule_note(self, variant: str, inp) -> str:
        return f"Shift: every letter moved {parse_variant(variant)} places forward."

    def solve(self, variant: str, inp) -> str:
        return shift_text(inp, -parse_variant(variant))

    def rule_source(self, variant: str) -> str:
        return _SOLVER_TEMPLATE.format(shift=parse_variant(variant))

    def task_intro(self) -> str:
        return "Each ciphertext below is an encrypted English word; give the plaintext."

    def example_text(self, inp, answer, note=None) -> str:
        lines = [f"Ciphertext: {inp}"]
        if note:
            lines.append(note)
        lines.append(self.answer_lead if answer is None else f"{self.answer_lead} {self.answer_text(answer)}")
        return "\n".join(lines)

    def answer_text(self, answer) -> str:
        return str(answer)

    def parse(self, completion: str, problem: Problem):
        text = f"{self.answer_lead} {completion}"
        boxed = first_boxed(text)
        if boxed is not None:
            m = re.search(r"[A-Za-z]+", boxed)
            return m.group(0).lower() if m else None
        m = re.search(rf"plaintext\s*:\s*{OPENING_QUOTES}([A-Za-z]+)", text, re.IGNORECASE)
        return m.group(1).lower() if m else None

    def solver_kwargs(self, problem: Problem) -> dict:
        return {"text": problem.input}

    def from_solver_output(self, value, problem: Problem):
        return value.strip().lower() if isinstance(value, str) else None

    def judge(self, answer, problem: Problem) -> Verdict:
        ok = str(answer).strip().lower() == problem.gold
        return Verdict(ok, int(ok), 1)
