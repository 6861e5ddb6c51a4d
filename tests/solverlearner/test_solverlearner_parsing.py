"""The documented answer-parsing rules, one behaviour per test (no data, no sandbox)."""
from __future__ import annotations

import pytest

from evals.solverlearner.arithmetic import ArithmeticTask, add_in_base
from evals.solverlearner.cipher import CipherTask, shift_text
from evals.solverlearner.common import Problem, extract_code, extract_solver, first_boxed, split_id
from evals.solverlearner.prompts import CODE_LEAD
from evals.solverlearner.spatial import MAPS, SpatialTask
from evals.solverlearner.syntax import SyntaxTask

ARITH = ArithmeticTask()
B9 = Problem("arithmetic", "base9", 0, ("76", "14"), "101", (), {"base": 9})


def test_add_in_base_matches_int_conversion():
    for base in (8, 9, 10, 11, 16):
        for a, b in [(0, 0), (7, 1), (80, 80), (255, 1), (1234, 4321)]:
            want = int(a) + int(b)
            digits = "0123456789ABCDEF"

            def to(n):
                s = ""
                while n:
                    s = digits[n % base] + s
                    n //= base
                return s or "0"
            assert add_in_base(to(a), to(b), base) == to(want)
    assert add_in_base("1A", "9", 10) == "29"  # base 10 applied to symbols: A counts as ten


@pytest.mark.parametrize("completion,want", [
    (" 101.", "101"),                                          # rule 2 through the prompt's own lead
    (" so \\boxed{0101} and later 5", "101"),                  # boxed wins, leading zeros dropped
    (" unclear. The result for 76+14 is 101.", "101"),         # rule 2 later in the text
    (" 90.", "90"),                                            # a decimal answer: wrong, not a failure
    (" hmm, maybe 11 or 101", "101"),                          # rule 3: last base-9 token
    (" I do not know", None),
    (" maybe 99 or 98", None),                                 # rule 3 ignores tokens outside the base
])
def test_arithmetic_parse(completion, want):
    assert ARITH.parse(completion, B9) == want


def test_arithmetic_rule2_only_for_this_query():
    # A model that continues with other problems: the first answer for *this* query counts.
    assert ARITH.parse(" 101.\nThe result for 11+11 is 22.", B9) == "101"
    assert ARITH.parse(" wait.\nThe result for 11+11 is 22.", B9) == "22"  # rule 3 (last base digits)


def test_arithmetic_judge_and_solver_output():
    assert ARITH.judge("101", B9).correct and not ARITH.judge("91", B9).correct
    assert ARITH.from_solver_output("0101 ", B9) == "101"
    assert ARITH.from_solver_output(101, B9) == "101"
    assert ARITH.from_solver_output(True, B9) is None and ARITH.from_solver_output([1], B9) is None


def test_boxed_balanced_and_unclosed():
    assert first_boxed("x \\boxed{a{b}c} \\boxed{d}") == "a{b}c"
    assert first_boxed("\\boxed{never closes") is None


def test_extract_code_rules():
    fn = "def solver(a, b):\n    return a\n"
    assert extract_code(CODE_LEAD + fn + "```\nmore text") == fn
    assert extract_code(CODE_LEAD + fn) == fn                                  # cut off: unclosed fence
    assert extract_code(CODE_LEAD + "```\n\n```python\n" + fn + "```") == fn   # chat model opens its own
    assert extract_code(fn) == fn                                              # bare code, no fence
    assert extract_code(CODE_LEAD + "def helper():\n    pass\n```") is None    # no `solver`
    assert extract_code("The answer is 101.") is None


@pytest.mark.parametrize("completion", [
    "def solver(a, b):\n    return a\n```\nDone.",                     # a base model continues the lead
    "def solver(a, b):\n    return a\n",                                # ... and is cut off
    "```python\ndef solver(a, b):\n    return a\n```",                   # a chat model opens its own fence
    "```python\ndef solver(a, b):\n    return a\n",                      # ... and is cut off
    "Here is my solver:\n```python\ndef solver(a, b):\n    return a\n```\nIt returns a.",  # prose first
    "```\n\n```python\ndef solver(a, b):\n    return a\n```",            # closes the lead, then its own block
])
def test_extract_solver_reads_continuations_and_fresh_answers(completion):
    assert extract_solver(completion, CODE_LEAD) == "def solver(a, b):\n    return a\n"


def test_extract_solver_finds_nothing_without_a_solver():
    assert extract_solver("```python\ndef helper():\n    pass\n```", CODE_LEAD) is None
    assert extract_solver("The answer is 101.", CODE_LEAD) is None


def test_split_id():
    assert split_id("arithmetic/base9/17") == ("arithmetic", "base9", 17)
    assert split_id("arithmetic/base9") is None and split_id("a/b/x") is None and split_id(None) is None


def test_syntax_parse():
    task = SyntaxTask()
    p = Problem("syntax", "ovs", 0, "noah loves mary.", ("mary", "loves", "noah"))
    assert task.parse(" subject = Mary, verb = loves, object = noah", p) == ("mary", "loves", "noah")
    assert task.parse(" \\boxed{mary, loves, noah}", p) == ("mary", "loves", "noah")
    assert task.parse(" \\boxed{mary loves}", p) is None
    assert task.parse(" mary loves noah", p) is None
    # chat models quote or bold the words: still the answer, not a parse failure
    assert task.parse(' subject = "Mary", verb = **loves**, object = `noah`', p) == ("mary", "loves", "noah")
    assert task.judge(("mary", "loves", "noah"), p).correct
    assert task.solve("ovs", "noah loves mary.") == ("mary", "loves", "noah")
    assert task.from_solver_output(["Mary", "loves", "noah"], p) == ("mary", "loves", "noah")
    assert task.from_solver_output("mary loves noah", p) is None


def test_cipher_parse_and_rule():
    task = CipherTask()
    p = Problem("cipher", "shift13", 0, shift_text("hello", 13), "hello", (), {"shift": 13})
    assert p.input == "uryyb" and task.solve("shift13", "uryyb") == "hello"
    assert task.parse(" Hello", p) == "hello"
    assert task.parse(" \\boxed{hello}", p) == "hello"
    assert task.parse(" ", p) is None
    assert task.parse(' "hello"\nCiphertext: "hello"', p) == "hello"   # SmolLM2's way of answering
    assert task.parse(" “hello”", p) == "hello"


SPATIAL = SpatialTask()
ROOM = ("You are in the middle of a kitchen. There is a microwave on the south side. There is a fridge on the west "
        "side. There is a coffee machine on the north side.")


def _room(variant):
    objs = [("microwave", "south"), ("fridge", "west"), ("coffee machine", "north")]
    return Problem("spatial", variant, 0, ROOM, SPATIAL.solve(variant, ROOM), (), {"objects": objs})


def test_spatial_maps():
    assert MAPS["r90"]["north"] == (-1, 0) and MAPS["r90"]["east"] == (0, 1)
    assert MAPS["r180"]["north"] == (0, -1) and MAPS["vflip"]["north"] == (0, -1)
    assert MAPS["hflip"]["east"] == (-1, 0) and MAPS["hflip"]["north"] == (0, 1)
    named = [tuple(MAPS[v][s] for s in ("north", "south", "east", "west")) for v in MAPS if v != "random"]
    rnd = tuple(MAPS["random"][s] for s in ("north", "south", "east", "west"))
    assert rnd not in named and sorted(rnd) == sorted(named[0])


def test_spatial_centroid_rule():
    p = _room("r180")
    assert SPATIAL.judge(p.gold, p).correct
    # the everyday map under r180 puts every object on the wrong side of the centroid
    blind = SPATIAL.solve("default", ROOM)
    v = SPATIAL.judge(blind, p)
    assert not v.correct and v.parts_correct == 0 and v.parts == 3
    # scale and offset do not matter, only the side of the centroid
    shifted = {k: (10 + 5 * x, -3 + 5 * y) for k, (x, y) in p.gold.items()}
    assert SPATIAL.judge(shifted, p).correct
    # a missing object is wrong, the others are judged around their own centroid
    partial = {"microwave": (0, 1), "fridge": (1, 0)}
    v = SPATIAL.judge(partial, p)
    assert not v.correct and v.parts == 3


def test_spatial_parse():
    p = _room("default")
    got = SPATIAL.parse(" microwave = (0, -1); Fridge: (-1, 0); coffee machine = (0.5, 1)", p)
    assert got == {"microwave": (0.0, -1.0), "fridge": (-1.0, 0.0), "coffee machine": (0.5, 1.0)}
    assert SPATIAL.parse(" the microwave is south", p) is None
    assert SPATIAL.from_solver_output({"Microwave": [0, -1], "fridge": (-1, 0), "x": 1}, p) == \
        {"microwave": (0.0, -1.0), "fridge": (-1.0, 0.0)}
    assert SPATIAL.from_solver_output({"microwave": (True, 0)}, p) is None


def test_spatial_parse_names_inside_names():
    room = ("You are in the middle of a living room. There is a table on the north side. There is a coffee table "
            "on the south side. There is a lamp on the east side.")
    objs = [("table", "north"), ("coffee table", "south"), ("lamp", "east")]
    p = Problem("spatial", "default", 0, room, SPATIAL.solve("default", room), (), {"objects": objs})
    got = SPATIAL.parse(" coffee table = (0, -1); table = (0, 1); lamp = (1, 0)", p)
    assert got == {"table": (0.0, 1.0), "coffee table": (0.0, -1.0), "lamp": (1.0, 0.0)}
    assert SPATIAL.judge(got, p).correct

