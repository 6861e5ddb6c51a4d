"""Shared rules for argument values: literal round-trip, size caps, and the `dict(...)` text of one input."""
from __future__ import annotations

import ast

MAX_VALUE_REPR = 120     # one argument's repr
MAX_INPUT_REPR = 400     # a whole `dict(...)`


def round_trips(value: object) -> bool:
    """True when `repr(value)` is short and `ast.literal_eval` gives back an equal value of the same type."""
    try:
        text = repr(value)
        if len(text) > MAX_VALUE_REPR:
            return False
        back = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return type(back) is type(value) and back == value


def kwargs_source(kwargs: dict) -> str:
    """`dict(a=1, b='x')`: the input text Case2Code's `example_str` and prompts use."""
    return "dict(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def valid_kwargs(kwargs: dict, params: list[str]) -> bool:
    return (isinstance(kwargs, dict) and all(isinstance(k, str) and k in params for k in kwargs)
            and all(round_trips(v) for v in kwargs.values()) and len(kwargs_source(kwargs)) <= MAX_INPUT_REPR)


def parse_kwargs_source(text: str) -> dict:
    """The kwargs of a `dict(k=literal, ...)` text we wrote (literal_eval per argument; never executed)."""
    node = ast.parse(text, mode="eval").body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
            and not node.args):
        raise ValueError(f"not a dict(...) call: {text[:60]}")
    return {k.arg: ast.literal_eval(k.value) for k in node.keywords}
