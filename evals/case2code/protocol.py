"""The official protocol's text handling: the prompt sent, and the code taken from an answer.

The official harness (choosewhatulike/case2code) appends a reminder of how the function will be called to the
row's prompt, and takes the code from the answer with its eval's extractor (`exec_utils.unwrap_code`, not the
variant in its data-processing script). We reproduce both exactly so scores are comparable.
"""
from __future__ import annotations

import hashlib

PYTHON_FENCE = "```python"
FENCE = "```"

# The official 500 test rows hide 22.9 of their ~29 inputs on average (scoring.input_counts on shared/data's
# test.jsonl). A split that hides fewer is an easier test: a function fitted to the shown examples alone passes
# more often. Every score therefore carries its rows' hidden counts, and reports flag a split below this line.
OFFICIAL_MIN_HIDDEN = 20
OFFICIAL_MEAN_HIDDEN = 22.9


def eval_prompt(row: dict) -> str:
    """The row's prompt plus the official call-signature reminder."""
    return (f"{row['prompt']}\n\n\nPlease write the correct names of arguments. As the function you implement "
            f"will be called by: {row['func_name']}(**input_dict).")


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def _block(text: str, body: int) -> tuple[str, bool]:
    """Text from `body` up to the next fence (or the end), stripped; and whether a closing fence was found."""
    end = text.find(FENCE, body)
    if end < 0:
        return text[body:].strip(), False
    return text[body:end].strip(), True


def extract_code(answer: str) -> tuple[str, str]:
    """(code, how), in the official extractor's order of preference:

    1. "```Python" is first rewritten to "```python";
    2. a "```python" block: the info string plus one more character (normally the newline, so "```python3" and
       "```python " work too) are skipped, then everything up to the next fence -> how "fenced", or up to the end
       when the fence is never closed -> "unterminated";
    3. else the first bare "```" block: only the three backticks are skipped, so an info string such as "py" stays
       in the code (an official quirk, kept) -> "bare_fenced" / "bare_unterminated";
    4. else the whole answer -> "whole".
    Everything is stripped of surrounding white space.
    """
    text = answer.replace("```Python", PYTHON_FENCE)
    start = text.find(PYTHON_FENCE)
    if start >= 0:
        code, closed = _block(text, start + len(PYTHON_FENCE) + 1)
        return code, "fenced" if closed else "unterminated"
    start = text.find(FENCE)
    if start >= 0:
        code, closed = _block(text, start + len(FENCE))
        return code, "bare_fenced" if closed else "bare_unterminated"
    return text.strip(), "whole"
