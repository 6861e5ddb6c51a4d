"""Canonical outcomes in the Case2Code format, and the parent-side comparison.

A call's canonical output is `json.dumps(repr(value))` for a return and `json.dumps("<class 'X'>: msg")` for
an exception. Case2Code's data writes `{"return": S}` or `{"error": "<|EXCEPTION|> " + S}`; some gold error
strings also carry text the reference function printed before it raised (an artifact of the original harness,
which read verdicts from stdout). Gold is trusted, so we may strip that; program output never reaches here.
"""
from __future__ import annotations

import ast
import json
import math
import re

from evals.execution.protocol import ERROR, MEMORY, OK

EXCEPTION_MARKER = "<|EXCEPTION|> "
MAX_LITERAL_CHARS = 100_000
MAX_NESTING = 50


# Exception messages CPython reworded after 3.9 (the Case2Code references were recorded with an older
# Python): (3.12 text, older text). Only verified rewordings; applied to *our* side, in the parent, on demand.
LEGACY_REWORDINGS = (
    (re.compile(r"^<class 'UnboundLocalError'>: cannot access local variable '([^']*)' where it is not "
                r"associated with a value$"), r"<class 'UnboundLocalError'>: local variable '\1' referenced before "
                                              r"assignment"),  # 3.11
    (re.compile(r"^<class 'TypeError'>: float\(\) argument must be a string or a real number, not '([^']*)'$"),
     r"<class 'TypeError'>: float() argument must be a string or a number, not '\1'"),  # 3.10
    (re.compile(r"^<class 'ZeroDivisionError'>: integer modulo by zero$"),
     "<class 'ZeroDivisionError'>: integer division or modulo by zero"),  # 3.12
)


def legacy_exception_text(canonical: str) -> str:
    """A canonical exception string with the post-3.9 rewordings above turned back into the old text."""
    try:
        text = json.loads(canonical)
    except ValueError:
        return canonical
    if not isinstance(text, str):
        return canonical
    for pattern, old in LEGACY_REWORDINGS:
        new, n = pattern.subn(old, text)
        if n:
            return json.dumps(new)
    return canonical


class BadExpected(ValueError):
    """An expected value that is not a canonical string."""


def is_canonical(s: object) -> bool:
    """A JSON string literal, optionally behind the exception marker."""
    if not isinstance(s, str):
        return False
    body = s[len(EXCEPTION_MARKER):] if s.startswith(EXCEPTION_MARKER) else s
    try:
        return isinstance(json.loads(body), str)
    except ValueError:
        return False


def parse_expected(expected: object) -> tuple[str, str]:
    """-> (kind, canonical) from a canonical string or a Case2Code `{"return"|"error": ...}` dict."""
    if isinstance(expected, dict):
        if "error" in expected:
            raw = expected["error"]
            if not isinstance(raw, str) or EXCEPTION_MARKER not in raw:
                raise BadExpected("error outcome without the exception marker")
            body = raw[raw.rindex(EXCEPTION_MARKER) + len(EXCEPTION_MARKER):]
            kind = "error"
        elif "return" in expected:
            body, kind = expected["return"], "return"
        else:
            raise BadExpected("outcome has neither 'return' nor 'error'")
    elif isinstance(expected, str):
        if expected.startswith(EXCEPTION_MARKER):
            body, kind = expected[len(EXCEPTION_MARKER):], "error"
        else:
            body, kind = expected, "return"
    else:
        raise BadExpected(f"expected must be a string or an outcome dict, not {type(expected).__name__}")
    if not is_canonical(body):
        raise BadExpected("expected is not a JSON string literal")
    return kind, body


def outcome_kind(status: str, exc: str | None) -> str | None:
    if status == OK:
        return "return"
    if status in (ERROR, MEMORY) and exc is not None:
        return "error"
    return None


def to_case2code(result: dict) -> dict | None:
    """A call result in Case2Code's `example_outputs` form (None when the call produced no outcome)."""
    kind = outcome_kind(result["status"], result.get("exc"))
    if kind is None or result.get("output") is None:
        return None
    return {"return": result["output"]} if kind == "return" else {"error": EXCEPTION_MARKER + result["output"]}


def _depth_ok(node: ast.AST) -> bool:
    stack = [(node, 0)]
    while stack:
        n, d = stack.pop()
        if d > MAX_NESTING:
            return False
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return True


def _literal(text: str):
    if len(text) > MAX_LITERAL_CHARS:
        raise ValueError("too long")
    tree = ast.parse(text, mode="eval")
    if not _depth_ok(tree):
        raise ValueError("too deep")
    return ast.literal_eval(tree)


def _close(a, b, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    return a == b


def outputs_match(result: dict, expected: object, *, float_tol: float | None = None,
                  legacy_messages: bool = False) -> bool:
    """Parent-side verdict for one call. Exact canonical-string equality, or literal-level float tolerance.
    `legacy_messages` also accepts an exception whose message differs only by a known CPython rewording
    (LEGACY_REWORDINGS), for references recorded with an older Python."""
    want_kind, want = parse_expected(expected)
    kind = outcome_kind(result["status"], result.get("exc"))
    got = result.get("output")
    if kind != want_kind or got is None:
        return False
    if got == want:
        return True
    if legacy_messages and kind == "error":
        return legacy_exception_text(got) == want
    if float_tol is None or kind != "return":
        return False
    try:
        return _close(_literal(json.loads(got)), _literal(json.loads(want)), float_tol)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
