"""Case2Code prompts: the official test format (for eval splits) and varied training formats (ours).

Official test rows (../shared/data/case2code/test.jsonl) put three parts in random order, each followed by one
to three newlines: `Function: NAME`, the fixed instruction, and one `Input: dict(...), Output: "..."` line per
shown example (the output is the recorded JSON string; for an exception the string after the marker). The
shown examples follow `choosed_example_idx`; the rest of the inputs stay hidden for scoring.

Training prompts vary the instruction wording (INSTRUCTIONS), the example format (EXAMPLE_FORMATS), optional
headings, the part order and the separators, all seeded per (function, variant).
"""
from __future__ import annotations

import json
import random
import re

OFFICIAL_INSTRUCTION = "Write a function that generates the output from the input."
EXCEPTION_MARKER = "<|EXCEPTION|> "

INSTRUCTIONS = (
    "Write a function that generates the output from the input.",
    "Implement a Python function that reproduces every input/output pair below.",
    "Figure out the rule behind these examples and write it as a Python function.",
    "Here are some calls and what they produced. Write the function that behaves this way.",
    "Your task: write Python code for the function whose behaviour the examples show.",
    "Reverse-engineer the function from its observed inputs and outputs.",
    "Given these test cases, write a Python function that passes all of them.",
    "Study the examples, infer what the function computes, and implement it.",
    "Please write the Python function that maps each input below to its output.",
    "The examples show a function's arguments and results. Recover its implementation.",
    "Can you write a function that returns exactly these results for these arguments?",
    "Write code for a function consistent with the following examples.",
    "Infer the missing function from the cases below and write it in Python.",
    "Below are input-output examples of an unknown function. Provide its source code.",
    "Implement the function so that each call below gives the shown result, exceptions included.",
    "Deduce the logic from the examples and express it as a Python function.",
    "You are given example invocations of a function. Write a function with the same behaviour.",
    "Using only the examples as a specification, write the function in Python.",
    "Work out what this function does from its examples, then write it.",
    "Produce a Python implementation that matches all of the example calls.",
    "From the pairs of arguments and return values below, reconstruct the function.",
    "Write the body of the function so that it agrees with every example given.",
    "Look at these examples and write a Python function that generalises them.",
    "Implement a function whose outputs match those listed for each input.",
)

HEADINGS = ("", "", "Examples:", "Test cases:", "Here are some examples:", "Observed behaviour:", "Cases:",
            "Input/output pairs:", "Some calls and their results:")
NAME_LINES = ("Function: {name}", "The function is named {name}.", "Function name: {name}", "Name: {name}",
              "The function to write is `{name}`.", "Call it {name}.", "def {name}(...)")


def _shown_value(outcome: dict) -> tuple[bool, str]:
    """(is_error, text): the value's repr for a return, 'Type: message' for an exception."""
    if "return" in outcome:
        return False, json.loads(outcome["return"])
    body = outcome["error"]
    body = body[body.rindex(EXCEPTION_MARKER) + len(EXCEPTION_MARKER):] if EXCEPTION_MARKER in body else body
    text = json.loads(body)
    m = re.match(r"^<class '([^']+)'>: ?(.*)$", text, re.S)
    return True, (f"{m.group(1)}: {m.group(2)}" if m else text)


def official_output_text(outcome: dict) -> str:
    """What the official prompt shows after `Output: ` (the recorded JSON string)."""
    if "return" in outcome:
        return outcome["return"]
    body = outcome["error"]
    return body[body.rindex(EXCEPTION_MARKER) + len(EXCEPTION_MARKER):] if EXCEPTION_MARKER in body else body


def _call(name: str, kwargs: dict, positional: bool = False) -> str:
    if positional:
        return f"{name}(" + ", ".join(repr(v) for v in kwargs.values()) + ")"
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def _fmt_official(name, src, kw, o):
    return f"Input: {src}, Output: {official_output_text(o)}"


def _fmt_doctest(name, src, kw, o):
    err, text = _shown_value(o)
    if err:
        return f">>> {_call(name, kw)}\nTraceback (most recent call last):\n  ...\n{text}"
    return f">>> {_call(name, kw)}\n{text}"


def _fmt_assert(name, src, kw, o):
    err, text = _shown_value(o)
    if err:
        return f"# {_call(name, kw)} raises {text}"
    return f"assert {_call(name, kw)} == {text}"


def _fmt_arrow(name, src, kw, o):
    err, text = _shown_value(o)
    return f"{_call(name, kw, positional=True)} -> {'raises ' if err else ''}{text}"


def _fmt_arguments_return(name, src, kw, o):
    err, text = _shown_value(o)
    return f"arguments={src}\n{'raised' if err else 'return'}={text}"


def _fmt_args_inline(name, src, kw, o):
    err, text = _shown_value(o)
    args = ", ".join(f"{k}:{v!r}" for k, v in kw.items())
    return f"(args={args}, {'raised' if err else 'return'}={text})"


def _fmt_in_out(name, src, kw, o):
    err, text = _shown_value(o)
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    return f"In: {args}\nOut: {'<error> ' if err else ''}{text}"


def _fmt_json(name, src, kw, o):
    err, text = _shown_value(o)
    return json.dumps({"input": {k: repr(v) for k, v in kw.items()}, ("error" if err else "output"): text})


def _fmt_sentence(name, src, kw, o):
    err, text = _shown_value(o)
    return f"Calling {_call(name, kw)} {'raises ' + text if err else 'returns ' + text}."


def _fmt_table(name, src, kw, o):
    err, text = _shown_value(o)
    return f"| {', '.join(f'{k}={v!r}' for k, v in kw.items())} | {'error: ' if err else ''}{text} |"


def _fmt_bullets(name, src, kw, o):
    err, text = _shown_value(o)
    return f"- {_call(name, kw, positional=True)} gives {'an error, ' if err else ''}{text}"


def _fmt_result_comment(name, src, kw, o):
    err, text = _shown_value(o)
    return f"{_call(name, kw)}  # {'raises ' if err else '=> '}{text}"


EXAMPLE_FORMATS = (_fmt_official, _fmt_doctest, _fmt_assert, _fmt_arrow, _fmt_arguments_return, _fmt_args_inline,
                   _fmt_in_out, _fmt_json, _fmt_sentence, _fmt_table, _fmt_bullets, _fmt_result_comment)
_BLANK_LINE_FORMATS = (_fmt_doctest, _fmt_arguments_return, _fmt_in_out)  # multi-line: separate with a blank line


def official_prompt(func_name: str, shown: list[tuple[str, dict]], rng: random.Random) -> str:
    """The official test prompt: `shown` is [(input `dict(...)` text, outcome)] in display order."""
    examples = "".join(f"Input: {src}, Output: {official_output_text(o)}\n" for src, o in shown)
    parts = [f"Function: {func_name}\n", OFFICIAL_INSTRUCTION + "\n", examples]
    rng.shuffle(parts)
    return "".join(p + "\n" * rng.randint(0, 2) for p in parts)


def training_prompt(func_name: str, shown: list[tuple[str, dict, dict]], rng: random.Random) -> str:
    """A varied training prompt: `shown` is [(input text, kwargs, outcome)] in display order."""
    fmt = rng.choice(EXAMPLE_FORMATS)
    sep = "\n\n" if fmt in _BLANK_LINE_FORMATS else "\n"
    lines = [fmt(func_name, src, kw, o) for src, kw, o in shown]
    if fmt is _fmt_table:
        lines = ["| input | output |", "|---|---|"] + lines
    heading = rng.choice(HEADINGS)
    block = (heading + "\n" if heading else "") + sep.join(lines)
    parts = [rng.choice(INSTRUCTIONS), rng.choice(NAME_LINES).format(name=func_name), block]
    rng.shuffle(parts)
    return rng.choice(("\n", "\n\n")).join(parts) + "\n"


def answer_text(code: str) -> str:
    """The target: the official `output` field's shape."""
    return f"The function is:\n\n```python\n{code}\n```"
