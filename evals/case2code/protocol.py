"""The official protocol's text handling: the prompt sent, and the code taken from an answer.

The official harness (choosewhatulike/case2code) appends a reminder of how the function will be called to the
row's prompt, and takes the code after the first "```python" fence up to the next fence (or the end of the
answer); an answer with no such fence is used whole. We reproduce both exactly so scores are comparable.
"""
from __future__ import annotations

import hashlib

PYTHON_FENCE = "```python"
FENCE = "```"


def eval_prompt(row: dict) -> str:
    """The row's prompt plus the official call-signature reminder."""
    return (f"{row['prompt']}\n\n\nPlease write the correct names of arguments. As the function you implement "
            f"will be called by: {row['func_name']}(**input_dict).")


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def extract_code(answer: str) -> tuple[str, str]:
    """(code, how): how is "fenced" (closed fence), "unterminated" (fence never closed) or "whole" (no fence).

    As the official extractor: the fence's info string is "python" and one more character is skipped
    (normally the newline; so "```python3" or "```python " work too), then everything up to the next
    fence, stripped.
    """
    start = answer.find(PYTHON_FENCE)
    if start < 0:
        return answer.strip(), "whole"
    body = start + len(PYTHON_FENCE) + 1
    end = answer.find(FENCE, body)
    if end < 0:
        return answer[body:].strip(), "unterminated"
    return answer[body:end].strip(), "fenced"
