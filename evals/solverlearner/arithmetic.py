"""Two-digit (optionally 3-, 4-digit) addition in base b, from the counterfactual-evaluation data.

Variants:
- `base{b}` (b in 8, 9, 10, 11, 16): `arithmetic/data/0shot/base{b}.txt`, demonstrations from the same line of
  `icl/base{b}.txt` (its first `n_shots` expressions, labelled by the rule);
- `base{b}_3digits`, `base{b}_4digits`: `0shot_{3,4}digits/base{b}.txt`, demonstrations drawn (seeded by the
  problem id) from the other lines of the same file;
- `ccc_base{b}`: the control set `ccc/base{b}.txt` (one number per line). It checks that the model can count in
  the base: the query is the number's successor, posed as `X+1`, so the same rule and the same `solver` apply.

Label: the base-b sum written in base b with digits `0-9A-Z` (upper case, no leading zeros).
`solver(a: str, b: str) -> str`: the operands as written, the sum as the label is written.

Answer parsing, in order: the first `\\boxed{...}`; else the first "The result for A+B is X" for this query
(the prompt ends with that phrase, so the completion's first token counts; X may use the decimal digits and the
base's letters, so "90" in base 8 is a wrong answer rather than a parse failure); else the last token of the
completion made only of the base's digits. Answers compare case-insensitively after stripping whitespace, a
trailing period and leading zeros; anything else (e.g. an answer with a digit outside the base) is wrong.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from evals.solverlearner.common import Problem, first_boxed
from evals.solverlearner.task_base import Task, UnknownVariant, Verdict
from patch_training.errors import UserError

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASES = (8, 9, 10, 11, 16)
_VARIANT = re.compile(r"^(ccc_)?base(\d+)(?:_(3|4)digits)?$")


def add_in_base(a: str, b: str, base: int) -> str:
    """Column addition of two numerals in `base`, digit values from `DIGITS` (case-insensitive).

    Done column by column rather than with int(): the rule-blind check applies base 10 to numerals that
    contain letters (base 16 data), and that must stay well defined.
    """
    xs = [DIGITS.index(c) for c in a.strip().upper()][::-1]
    ys = [DIGITS.index(c) for c in b.strip().upper()][::-1]
    out, carry = [], 0
    for i in range(max(len(xs), len(ys))):
        s = (xs[i] if i < len(xs) else 0) + (ys[i] if i < len(ys) else 0) + carry
        out.append(s % base)
        carry = s // base
    while carry:
        out.append(carry % base)
        carry //= base
    text = "".join(DIGITS[d] for d in reversed(out)).lstrip("0")
    return text or "0"


# The oracle's function is this same algorithm, written out as source (it runs in the sandbox, so it is text).
_SOLVER_TEMPLATE = '''DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASE = {base}


def solver(a: str, b: str) -> str:
    xs = [DIGITS.index(c) for c in a.strip().upper()][::-1]
    ys = [DIGITS.index(c) for c in b.strip().upper()][::-1]
    out, carry = [], 0
    for i in range(max(len(xs), len(ys))):
        s = (xs[i] if i < len(xs) else 0) + (ys[i] if i < len(ys) else 0) + carry
        out.append(s % BASE)
        carry = s // BASE
    while carry:
        out.append(carry % BASE)
        carry //= BASE
    return "".join(DIGITS[d] for d in reversed(out)).lstrip("0") or "0"
'''


def normalize(answer: str) -> str:
    text = answer.strip().rstrip(".").strip().upper()
    return text.lstrip("0") or ("0" if text else "")


def parse_variant(variant: str) -> tuple[int, str]:
    """'base9' -> (9, '0shot'); 'base9_3digits' -> (9, '0shot_3digits'); 'ccc_base9' -> (9, 'ccc')."""
    m = _VARIANT.match(variant)
    if not m or int(m.group(2)) not in BASES or (m.group(1) and m.group(3)):
        raise UnknownVariant(f"arithmetic: unknown variant {variant!r}; known: base{{b}}, base{{b}}_3digits, "
                        f"base{{b}}_4digits, ccc_base{{b}} with b in {', '.join(map(str, BASES))}")
    base = int(m.group(2))
    if m.group(1):
        return base, "ccc"
    return base, f"0shot_{m.group(3)}digits" if m.group(3) else "0shot"


class ArithmeticTask(Task):
    name = "arithmetic"
    everyday_variant = "base10"
    default_variants = tuple(f"base{b}" for b in BASES)
    solver_signature = "def solver(a: str, b: str) -> str"
    solver_doc = ("`a` and `b` are the two numbers of the left-hand side exactly as written; return the result "
                  "written the same way the outputs above are written")
    answer_format = "The result for A+B is X."
    answer_lead = "The result for {q} is"

    def check_variant(self, variant: str) -> None:
        parse_variant(variant)

    def load(self, variant: str, data_dir: Path, n_shots: int) -> list[Problem]:
        base, folder = parse_variant(variant)
        path = data_dir / "counterfactual" / "arithmetic" / "data" / folder / f"base{base}.txt"
        if not path.is_file():
            raise UserError(f"arithmetic: data file {path} is missing (see ../shared/data/README.md)")
        lines = path.read_text().splitlines()
        if folder == "ccc":
            queries = [(ln.strip(), "1") for ln in lines]
        else:
            queries = [tuple(ln.strip().split("+", 1)) for ln in lines]
        icl = None
        if folder == "0shot":
            icl_path = data_dir / "counterfactual" / "arithmetic" / "data" / "icl" / f"base{base}.txt"
            if not icl_path.is_file():
                raise UserError(f"arithmetic: demonstration file {icl_path} is missing")
            icl = icl_path.read_text().splitlines()
        problems = []
        for i, q in enumerate(queries):
            if icl is not None:
                query_text, _, demo_text = icl[i].partition("\t")
                if query_text.strip() != f"{q[0]}+{q[1]}":
                    raise UserError(f"arithmetic: {icl_path} line {i + 1} is for {query_text!r}, "
                                    f"not {q[0]}+{q[1]}")
                demo_inputs = [tuple(e.split("+", 1)) for e in demo_text.split(",") if "+" in e][:n_shots]
            else:  # seeded by the id, so a problem's demonstrations do not depend on --limit
                rng = random.Random(f"arithmetic/{variant}/{i}")
                others = [j for j in range(len(queries)) if j != i]
                demo_inputs = [queries[j] for j in rng.sample(others, min(n_shots, len(others)))]
            demos = tuple(((a, b), add_in_base(a, b, base)) for a, b in demo_inputs)
            problems.append(Problem(self.name, variant, i, (q[0], q[1]), add_in_base(q[0], q[1], base), demos,
                                    {"base": base}))
        return problems

    # ---- rule
    def rule_text(self, variant: str) -> str:
        base, _ = parse_variant(variant)
        return (f"All numbers are written in base {base}, whose digits are \"{DIGITS[:base]}\" "
                f"(from smallest to largest value). Add the two numbers in base {base} and write the sum in "
                f"base {base}.")

    def rule_note(self, variant: str, inp) -> str:
        base, _ = parse_variant(variant)
        return f"In base {base},"

    def solve(self, variant: str, inp) -> str:
        base, _ = parse_variant(variant)
        return add_in_base(inp[0], inp[1], base)

    def rule_source(self, variant: str) -> str:
        base, _ = parse_variant(variant)
        return _SOLVER_TEMPLATE.format(base=base)

    # ---- text
    def task_intro(self) -> str:
        return "Each line below gives the result of adding two numbers."

    def example_text(self, inp, answer, note=None) -> str:
        lead = self.answer_lead_for(inp)
        if note:
            lead = f"{note} {lead[0].lower()}{lead[1:]}"
        return lead if answer is None else f"{lead} {self.answer_text(answer)}."

    def answer_lead_for(self, inp) -> str:
        return self.answer_lead.format(q=f"{inp[0]}+{inp[1]}")

    def answer_text(self, answer) -> str:
        return str(answer)

    def parse(self, completion: str, problem: Problem) -> str | None:
        base = problem.meta["base"]
        text = f"{self.answer_lead_for(problem.input)} {completion}"
        boxed = first_boxed(text)
        if boxed is not None:
            return normalize(boxed) or None
        token = rf"[0-9A-Za-z]+"
        q = re.escape(f"{problem.input[0]}+{problem.input[1]}")
        numeral = DIGITS[:max(base, 10)]  # a decimal digit outside the base is a wrong answer, not a failure
        for m in re.finditer(rf"the result for\s*{q}\s*is\s*:?\s*({token})", text, re.IGNORECASE):
            if all(c in numeral for c in m.group(1).upper()):
                return normalize(m.group(1))
        tokens = [t for t in re.findall(token, completion) if all(c in DIGITS[:base] for c in t.upper())]
        return normalize(tokens[-1]) if tokens else None

    def solver_kwargs(self, problem: Problem) -> dict:
        return {"a": problem.input[0], "b": problem.input[1]}

    def from_solver_output(self, value, problem: Problem) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None
        return normalize(str(value)) or None

    def judge(self, answer, problem: Problem) -> Verdict:
        ok = normalize(str(answer)) == problem.gold
        return Verdict(ok, int(ok), 1)
