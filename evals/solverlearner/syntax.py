"""Find subject, verb and object of a sentence whose word order was changed (SVO, SOV, VSO, VOS, OSV, OVS).

Data: `syntax/data/synthetic_data/{order}/test.csv` (`original_sent,main_verb,reordered_sent`; the original
sentence is SVO). The query is the reordered sentence; the gold answer is (subject, verb, object) of the
original. Demonstrations: `n_shots` other rows of the same file, drawn with a seed made of the problem id.

Answer format: `subject = S, verb = V, object = O`. Parsing, in order: the first `\\boxed{...}` (the same
pattern inside it, or exactly three words split by commas/spaces); else the first `subject = S, verb = V,
object = O` (`:` also accepted, any separators, words possibly quoted) in "Answer:" + completion. Words compare
lower-cased.
`solver(sentence: str) -> tuple[str, str, str]`: the reordered sentence in, (subject, verb, object) out
(a list is accepted).
"""
from __future__ import annotations

import csv
import random
import re
from pathlib import Path

from evals.solverlearner.common import OPENING_QUOTES, Problem, first_boxed
from evals.solverlearner.task_base import Task, UnknownVariant, Verdict
from patch_training.errors import UserError

ORDERS = ("svo", "sov", "vso", "vos", "osv", "ovs")
_ROLE_NAMES = {"s": "subject", "v": "verb", "o": "object"}
_TRIPLE = re.compile(rf"subject\s*[=:]\s*{OPENING_QUOTES}([a-z]+)\W+verb\s*[=:]\s*{OPENING_QUOTES}([a-z]+)"
                     rf"\W+object\s*[=:]\s*{OPENING_QUOTES}([a-z]+)", re.IGNORECASE)

_SOLVER_TEMPLATE = '''ORDER = "{order}"


def solver(sentence: str) -> tuple:
    words = sentence.strip().rstrip(".").split()
    roles = dict(zip(ORDER, words))
    return (roles["s"], roles["v"], roles["o"])
'''


def words_of(sentence: str) -> list[str]:
    return sentence.strip().rstrip(".").lower().split()


def apply_order(sentence: str, order: str) -> tuple[str, str, str]:
    roles = dict(zip(order, words_of(sentence)))
    return roles.get("s", ""), roles.get("v", ""), roles.get("o", "")


class SyntaxTask(Task):
    name = "syntax"
    everyday_variant = "svo"
    default_variants = ORDERS
    solver_signature = "def solver(sentence: str) -> tuple[str, str, str]"
    solver_doc = "`sentence` is the sentence as written above; return (subject, verb, object)"
    answer_format = "Answer: subject = ..., verb = ..., object = ..."
    answer_lead = "Answer:"

    def check_variant(self, variant: str) -> None:
        if variant not in ORDERS:
            raise UnknownVariant(f"syntax: unknown variant {variant!r}; known: {', '.join(ORDERS)}")

    def load(self, variant: str, data_dir: Path, n_shots: int) -> list[Problem]:
        self.check_variant(variant)
        path = data_dir / "counterfactual" / "syntax" / "data" / "synthetic_data" / variant / "test.csv"
        if not path.is_file():
            raise UserError(f"syntax: data file {path} is missing (see ../shared/data/README.md)")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        golds = []
        for i, r in enumerate(rows):
            w = words_of(r.get("original_sent") or "")
            if len(w) != 3 or w[1] != (r.get("main_verb") or "").lower():
                raise UserError(f"syntax: {path} row {i + 1}: expected a three-word SVO sentence with its verb "
                                f"in the middle, got {r.get('original_sent')!r}")
            golds.append((w[0], w[1], w[2]))
        problems = []
        for i, r in enumerate(rows):
            rng = random.Random(f"syntax/{variant}/{i}")
            others = [j for j in range(len(rows)) if j != i]
            picks = rng.sample(others, min(n_shots, len(others)))
            demos = tuple((rows[j]["reordered_sent"], golds[j]) for j in picks)
            problems.append(Problem(self.name, variant, i, r["reordered_sent"], golds[i], demos))
        return problems

    def rule_text(self, variant: str) -> str:
        names = ", ".join(_ROLE_NAMES[c] for c in variant)
        return (f"In this language the words of a sentence come in the order {names} "
                f"({variant.upper()}). Name the subject, the verb and the object of the sentence.")

    def rule_note(self, variant: str, inp) -> str:
        return "Word order: " + " ".join(_ROLE_NAMES[c] for c in variant) + "."

    def solve(self, variant: str, inp) -> tuple[str, str, str]:
        return apply_order(inp, variant)

    def rule_source(self, variant: str) -> str:
        self.check_variant(variant)
        return _SOLVER_TEMPLATE.format(order=variant)

    def task_intro(self) -> str:
        return "For each sentence below, name its subject, its verb and its object."

    def example_text(self, inp, answer, note=None) -> str:
        lines = [f"Sentence: {inp}"]
        if note:
            lines.append(note)
        lines.append(self.answer_lead if answer is None else f"{self.answer_lead} {self.answer_text(answer)}")
        return "\n".join(lines)

    def answer_text(self, answer) -> str:
        s, v, o = answer
        return f"subject = {s}, verb = {v}, object = {o}"

    def parse(self, completion: str, problem: Problem):
        text = f"{self.answer_lead} {completion}"
        boxed = first_boxed(text)
        if boxed is not None:
            m = _TRIPLE.search(boxed)
            if m:
                return tuple(g.lower() for g in m.groups())
            parts = [p for p in re.split(r"[\s,;]+", boxed.strip().rstrip(".")) if p]
            return tuple(p.lower() for p in parts) if len(parts) == 3 else None
        m = _TRIPLE.search(text)
        return tuple(g.lower() for g in m.groups()) if m else None

    def solver_kwargs(self, problem: Problem) -> dict:
        return {"sentence": problem.input}

    def from_solver_output(self, value, problem: Problem):
        if isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(x, str) for x in value):
            return tuple(x.strip().lower() for x in value)
        return None

    def judge(self, answer, problem: Problem) -> Verdict:
        ok = tuple(answer) == tuple(problem.gold)
        return Verdict(ok, int(ok), 1)
