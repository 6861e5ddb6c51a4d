"""A small source tree with one function of each kind, and where each must land in the synthesis funnel."""
from __future__ import annotations

from pathlib import Path

PURE = '''
import math

OFFSET = 7


def scale(n: int, factor: int = 3) -> int:
    return n * factor + 1


def shout(text: str) -> str:
    return text.upper() + "!"


def hypotenuse(a: int, b: int) -> float:
    return round(math.hypot(a, b), 3)


def shifted(x: int) -> int:
    return x - OFFSET


def _clean(word):
    return word.strip(".,!").lower()


def normalise_words(sentence: str) -> str:
    return " ".join(_clean(w) for w in sentence.split())


def double_a(n: int) -> int:
    return n * 2


def double_b(n: int) -> int:
    return n + n
'''

IMPURE = '''
import os
import time
import numpy as np
from datetime import datetime


class Box:
    pass


def read_first(path):
    return open(path).read()


def cwd_join(name):
    return os.path.join("x", name)


def stamp(x):
    return (x, time.time())


def age(year: int) -> int:
    return datetime.now().year - year


def ident(x):
    return id(x)


def tag_set(text: str) -> list:
    return list({"alpha", "beta", "gamma", "delta", "epsilon", text})


def as_iterator(items: list) -> str:
    return str(iter(items))


def boxed(x):
    return Box()


def with_numpy(x):
    return np.sum(x)


def mystery(x):
    return undefined_helper(x)


def _h1(a):
    return a + 1


def _h2(a):
    return _h1(a) * 2


def _h3(a):
    return _h2(a) - 3


def three_helpers(a: int) -> int:
    return _h3(a) + _h1(a)


def gen(n):
    yield n


async def coro(n):
    return n


@staticmethod
def decorated(n):
    return n


def uses_global(n):
    global OFFSET
    return n


def nested(n):
    def inner():
        return n
    return inner()


def no_args():
    return 1


def posonly(a, /):
    return a


def only_prints(a):
    print(a)
'''

# Exact copy of `scale` (other docstring and layout) and a near copy of a longer function.
LONG = '''
def run_length(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    if len(text) > 1000:
        raise ValueError("text is too long")
    out = []
    count = 1
    for i in range(1, len(text) + 1):
        if i < len(text) and text[i] == text[i - 1]:
            count += 1
        else:
            out.append(text[i - 1] + str(count))
            count = 1
    if not text:
        return ""
    return "".join(out)
'''
COPIES = '''
def scale(n: int, factor: int = 3) -> int:
    """A copy with a docstring."""
    return (n * factor) + 1
''' + LONG.replace("def run_length", "def run_length_copy").replace("str(count)", "repr(count)")

# helpers that pass the filters are functions in their own right
EXPECTED_KEPT = {"scale", "shout", "hypotenuse", "shifted", "normalise_words", "run_length", "_clean", "_h1", "_h2",
                 "_h3"}
# drop reason -> how many planted functions land there
EXPECTED_DROPS = {
    "denied_call": 4,          # open, time.time(), datetime.now(), id()
    "denied_import": 1,        # os
    "unbundlable_global": 1,   # a class
    "non_stdlib_import": 1,    # numpy
    "unresolved_name": 1,
    "too_many_helpers": 1,
    "generator": 1, "async": 1, "decorated": 1, "global_nonlocal": 1, "nested_scope": 1, "no_arguments": 1,
    "positional_only": 1, "print_only": 1,
    "exact_duplicate": 1, "near_duplicate": 1, "decontam_ast": 1,
    "nondeterministic": 1,     # set order under another hash seed
    "no_inputs_left": 1,       # every repr leaks an address
    "behavioural_duplicate": 1,
}


def write_tree(root: Path, test_function: str) -> Path:
    """The tree under `root/src`, with `test_function` (copied from the Case2Code test set) in `stolen.py`."""
    src = root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "pure.py").write_text(PURE)
    (src / "pkg" / "impure.py").write_text(IMPURE)
    (src / "pkg" / "long.py").write_text(LONG)
    (src / "pkg" / "copies.py").write_text(COPIES)
    (src / "pkg" / "stolen.py").write_text(test_function)
    (src / "pkg" / "broken.py").write_text("def broken(:\n    return 1\n")
    (src / "pkg" / "latin1.py").write_bytes("def f(x):\n    return 'caf\xe9'\n".encode("latin-1"))
    (src / "pkg" / "tests").mkdir()
    (src / "pkg" / "tests" / "test_skip.py").write_text("def skipped(a):\n    return a\n")
    (src / "pkg" / "__pycache__").mkdir()
    return src
