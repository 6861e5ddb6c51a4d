"""Inputs written by a language model: a one-shot prompt asking for 10 `dict(...)` inputs, answered by our
own checkpoint (through the decoding engine) or any OpenAI-compatible endpoint, parsed with `ast` only.

The answer is never executed: we find the list literal, require every element to be a `dict(...)` call with
keyword arguments only, and `ast.literal_eval` each argument. An answer that is not a list of such dicts is
counted per function (`llm_bad_answer`); single bad elements are counted (`llm_bad_items`) and skipped.
"""
from __future__ import annotations

import ast
import re
import warnings
from collections import Counter

from case2code_finetune.input_values import valid_kwargs
from patch_training.errors import UserError

TEMPERATURE = 0.2  # the official run's setting
MAX_NEW_TOKENS = 512

_SHOT_FUNCTION = '''def repeat_word(word: str, times: int) -> str:
    return "-".join([word] * times)
'''
_SHOT_ANSWER = '''```python
examples = [
    dict(word='cat', times=1),
    dict(word='dog', times=2),
    dict(word='a', times=0),
    dict(word='hello', times=3),
    dict(word='', times=2),
    dict(word='xyz', times=5),
    dict(word='Sun', times=4),
    dict(word='42', times=2),
    dict(word='moon', times=6),
    dict(word='ok', times=10),
]
```'''


def build_prompt(content: str) -> str:
    """Our one-shot instruction (own wording) for one function's source."""
    return (
        "You will see a Python function. Work out what kind of value each parameter expects, then propose "
        "10 varied test inputs for it. Write each input as a dict(...) call whose keyword arguments are the "
        "parameter names, and use plain literal values only (numbers, strings, lists, tuples, dicts, "
        "booleans, None).\n"
        "Answer with a single Python block that assigns the list to `examples`.\n\n"
        f"Function:\n```python\n{_SHOT_FUNCTION}```\nInputs:\n{_SHOT_ANSWER}\n\n"
        f"Function:\n```python\n{content.rstrip()}\n```\nInputs:\n")


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.S)


def _list_node(text: str) -> ast.List | None:
    blocks = _FENCE.findall(text) or [text]
    for block in blocks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(block.strip())
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for stmt in tree.body:
            value = getattr(stmt, "value", None)
            if isinstance(value, ast.List):
                return value
    return None


def parse_answer(text: str, params: list[str], counts: Counter | None = None) -> list[dict] | None:
    """kwargs dicts from a model answer, or None when it is not a list of `dict(...)` inputs."""
    counts = counts if counts is not None else Counter()
    node = _list_node(text)
    if node is None:
        return None
    out, seen = [], set()
    for elt in node.elts:
        if not (isinstance(elt, ast.Call) and isinstance(elt.func, ast.Name) and elt.func.id == "dict"
                and not elt.args and all(k.arg is not None for k in elt.keywords)):
            counts["llm_bad_items"] += 1
            continue
        try:
            kw = {k.arg: ast.literal_eval(k.value) for k in elt.keywords}
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            counts["llm_bad_items"] += 1
            continue
        if not valid_kwargs(kw, params) or repr(kw) in seen:
            counts["llm_bad_items"] += 1
            continue
        seen.add(repr(kw))
        out.append(kw)
    return out if out else None


def open_language_model(*, checkpoint: str | None = None, endpoint: str | None = None, hf_dir: str | None = None,
                        model_name: str | None = None, cache_dir: str | None = None, batch_size: int = 8):
    """The project's model interface for our checkpoint or an OpenAI-compatible endpoint (imported lazily:
    only this path needs the backends)."""
    try:
        from evals.backends import open_model  # noqa: PLC0415
    except ImportError as e:
        raise UserError(f"LLM inputs need evals.backends, which is not available here ({e})") from e
    return open_model(checkpoint=checkpoint, hf_dir=hf_dir, endpoint=endpoint, model_name=model_name,
                      cache_dir=cache_dir, batch_size=batch_size)


class LLMInputs:
    """The model-written generator (same interface as `typed_inputs.TypedInputs`)."""
    name = "llm"

    def __init__(self, model, *, seed: int = 0, batch_size: int = 16):
        self.model, self.seed, self.batch_size = model, seed, batch_size
        self.last_answers: dict[str, str] = {}  # function id -> raw answer of the latest generate()

    def generate(self, rows: list[dict], counts: Counter) -> dict[str, list[dict]]:
        from evals.model_api import Sampling  # noqa: PLC0415 - the interface, not a backend

        sampling = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, seed=self.seed)
        out: dict[str, list[dict]] = {}
        self.last_answers = {}
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i:i + self.batch_size]
            try:
                answers = self.model.generate([build_prompt(r["content"]) for r in chunk], 1, sampling)
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - the backend already retried; report it in one line
                raise UserError(f"LLM input generation failed after retries: {type(e).__name__}: {e}"
                                .splitlines()[0]) from e
            for row, comps in zip(chunk, answers):
                counts["llm_prompted"] += 1
                text = comps[0].text if comps else ""
                self.last_answers[row["id"]] = text
                kws = parse_answer(text, row["params"], counts)
                if kws is None:
                    counts["llm_bad_answer"] += 1
                    kws = []
                out[row["id"]] = kws
        return out
