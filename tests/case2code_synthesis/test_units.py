"""Input generators, prompt formats, decontamination and splits, without the sandbox."""
from __future__ import annotations

import ast
import random
import re

from case2code_finetune import prompt_render as pr
from case2code_finetune.decontaminate import Decontaminator
from case2code_finetune.input_values import parse_kwargs_source, round_trips
from case2code_finetune.splits import assign_splits
from case2code_finetune.typed_inputs import Evidence, typed_inputs


def _fn(src: str) -> ast.FunctionDef:
    return ast.parse(src).body[0]


USAGE = '''
def usage(text, n, table, items, flag=False):
    words = text.split()
    total = 0
    for i in range(n):
        total += i
    for x in items:
        total += x
    return (words, total + table["price"], flag)
'''


def test_types_are_guessed_from_usage_defaults_and_literals():
    ev = Evidence(_fn(USAGE))
    assert ev.ranked("text")[0] == "str"       # .split()
    assert ev.ranked("n")[0] == "int"          # range()
    assert ev.ranked("table")[0] == "dict"     # string subscript
    assert ev.ranked("items")[0] == "list_int"  # iterated
    assert ev.ranked("flag")[0] == "bool"      # default
    assert ev.dict_keys["table"] == ["price"]
    kws = typed_inputs(_fn(USAGE))
    assert kws and all(list(kw) == ["text", "n", "table", "items", "flag"] for kw in kws)
    assert any(isinstance(kw["table"], dict) and "price" in kw["table"] for kw in kws)


def test_typed_inputs_are_seeded_distinct_and_literal():
    fn = _fn("def f(word: str, k: int = 2) -> str:\n    return word * k\n")
    a, b = typed_inputs(fn, seed=3), typed_inputs(fn, seed=3)
    assert a == b and len(a) >= 8
    assert typed_inputs(fn, seed=4) != a
    assert len({repr(kw) for kw in a}) == len(a)
    assert all(round_trips(v) for kw in a for v in kw.values())
    assert not round_trips(object()) and not round_trips("x" * 500) and round_trips((1, "a", [2.5]))


def test_kwargs_text_is_read_without_executing():
    assert parse_kwargs_source("dict(a=1, b=(2, 'x'))") == {"a": 1, "b": (2, "x")}
    for bad in ("dict(a=__import__('os'))", "print(1)", "dict(1)"):
        try:
            parse_kwargs_source(bad)
        except (ValueError, SyntaxError):
            continue
        raise AssertionError(bad)


def test_prompt_variety_and_official_shape():
    assert len(set(pr.INSTRUCTIONS)) >= 20 and len(pr.EXAMPLE_FORMATS) >= 10
    shown_kw = [({"n": 1}, {"return": '"2"'}), ({"n": 0}, {"error": '<|EXCEPTION|> "<class \'ValueError\'>: bad"'}),
                ({"n": 5}, {"return": '"10"'})]
    kw, o = shown_kw[1]
    rendered = {f("g", "dict(n=0)", kw, o) for f in pr.EXAMPLE_FORMATS}
    assert len(rendered) == len(pr.EXAMPLE_FORMATS)  # every format writes the exception its own way
    assert all("ValueError" in r and "bad" in r for r in rendered)
    rng = random.Random(0)
    prompts = {pr.training_prompt("g", [(f"dict(n={kw['n']})", kw, o) for kw, o in shown_kw], rng)
               for _ in range(40)}
    assert len(prompts) > 30
    p = pr.official_prompt("g", [(f"dict(n={kw['n']})", o) for kw, o in shown_kw], random.Random(1))
    assert "Input: dict(n=1), Output: \"2\"\n" in p
    assert "Input: dict(n=0), Output: \"<class 'ValueError'>: bad\"\n" in p
    assert re.search(r"^Function: g\n", p, re.M) and pr.OFFICIAL_INSTRUCTION + "\n" in p


TEST_FN = '''def digit_sum(number):
    total = 0
    while number > 0:
        total += number % 10
        number //= 10
    return total
'''


def test_decontamination_catches_renamed_and_lightly_edited_copies():
    d = Decontaminator([TEST_FN])
    renamed = TEST_FN.replace("digit_sum", "sum_digits")
    assert d.reason(_fn(renamed), renamed) == "decontam_ast"
    edited = renamed.replace("return total", "total = total * 1\n    return total")
    assert d.reason(_fn(edited), edited) == "decontam_ngram"
    other = "def other(a, b):\n    return sorted([a, b])[0] - len(str(b))\n"
    assert d.reason(_fn(other), other) is None


def test_splits_are_disjoint_by_function_or_by_module():
    recs = [{"id": f"f{i}", "fn_hash": f"h{i}", "module": f"m{i % 7}"} for i in range(200)]
    by_fn = assign_splits(recs, min_test=30, test_fraction=0.1, validation_fraction=0.05)
    counts = {s: sum(1 for v in by_fn.values() if v == s) for s in ("train", "validation", "test")}
    assert counts["test"] == 30 and counts["validation"] == 10 and counts["train"] == 160
    by_mod = assign_splits(recs, min_test=30, by_module=True)
    split_of_module: dict = {}
    for r in recs:
        split_of_module.setdefault(r["module"], set()).add(by_mod[r["id"]])
    assert all(len(s) == 1 for s in split_of_module.values())
    assert assign_splits(recs, min_test=30) == by_fn  # deterministic


def _result(outputs):
    from evals.execution import ProgramResult

    calls = [{"status": "ok", "output": o, "exc": None, "note": None} if not o.startswith("E:") else
             {"status": "error", "output": o[2:], "exc": "ValueError", "note": None} for o in outputs]
    return ProgramResult("f", 0, "ok", calls)


def test_keep_rule_ours_is_stricter_than_the_official_one():
    from collections import Counter

    from case2code_finetune.execute import KeepRule, select

    inputs = [{"src": f"dict(x={i})", "origin": "typed"} for i in range(4)]
    err = 'E:"<class \'ValueError\'>: no"'
    mixed = _result(['"1"', '"2"', '"3"', err])
    assert select({}, inputs, mixed, mixed, KeepRule(), Counter()) == "too_few_returns"
    kept = select({}, inputs, mixed, mixed, KeepRule(official=True), Counter())
    assert isinstance(kept, tuple) and len(kept[1]) == 4 and "error" in kept[1][3]
    all_err = _result([err] * 4)
    assert select({}, inputs, all_err, all_err, KeepRule(official=True), Counter()) == "all_exceptions"
    other = _result(['"1"', '"2"', '"4"', err])
    assert select({}, inputs, mixed, other, KeepRule(official=True), Counter()) == "nondeterministic"
    leaky = _result(['"<object at 0x7f00>"', '"2"', '"3"', err])
    leaky_b = _result(['"<object at 0x7f99>"', '"2"', '"3"', err])
    counts = Counter()
    kept = select({}, inputs, leaky, leaky_b, KeepRule(official=True), counts)
    assert counts["inputs_address_leak"] == 1 and len(kept[1]) == 3
    many = [{"src": f"dict(x={i})", "origin": "typed"} for i in range(8)]
    typed_err = _result(['"1"', '"2"', '"3"', '"4"', '"5"', 'E:"<class \'TypeError\'>: t"', err, '"6"'])
    counts = Counter()
    kept = select({}, many, typed_err, typed_err, KeepRule(), counts)
    assert counts["inputs_wrong_type_guess"] == 1 and len(kept[1]) == 7  # one ValueError of 7 is under 30%
