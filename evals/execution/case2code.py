"""How Case2Code's reference outputs were produced, reproduced as far as a sandbox should.

Reading the 500 test rows against their recorded outputs shows how the original pipeline ran a function:
- `example_str` ran in the *same* `__main__` namespace as the function, after it: rows use names the
  examples define (`INFINITY`, `np`, `ALLOWED_EXTENSIONS`) inside the function, examples pass the function
  itself (`dict(x=formatr)`), and example classes print as `<__main__.ExampleClass ...>`;
- each generation round (`examples = [...]`, then each `examples += [...]` with the statements before it)
  ran in its own fresh process: a name defined between two rounds is visible only to the later round, the
  hash of `'hello'` changes between rounds but not within one, and state a call clobbers resets per round;
- `quit`/`exit` were None (a human-eval style guard): `quit()` raised "'NoneType' object is not callable";
- numpy was 1.x: scalars printed as `1`, where numpy 2 prints `np.int64(1)`.
These are applied by `compat="case2code"` (in the sandboxed child only).
"""
from __future__ import annotations

import ast
import warnings

from evals.execution.pool import Program



def _assigns_examples(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "examples" for t in stmt.targets)
    if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        return isinstance(stmt.target, ast.Name) and stmt.target.id == "examples"
    return False


def split_rounds(example_str: str) -> list[str]:
    """Cut `example_str` after each top-level statement that (re)binds `examples`; statements after the last
    one join the last round. Unparseable text stays one round (it will fail inside the sandbox, not here)."""
    try:
        with warnings.catch_warnings():  # data with odd escapes ('\P') is still valid source
            warnings.simplefilter("ignore")
            body = ast.parse(example_str).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [example_str]
    lines = example_str.splitlines(keepends=True)
    cuts = [s.end_lineno for s in body if _assigns_examples(s)]
    if len(cuts) <= 1:
        return [example_str]
    cuts[-1] = len(lines)
    rounds, prev = [], 0
    for end in cuts:
        rounds.append("".join(lines[prev:end]))
        prev = end
    return rounds


def case2code_program(task_id: str, code: str, func_name: str, example_str: str, n_calls: int,
                      **kwargs) -> Program:
    """A Program that runs `code` on a Case2Code row's inputs the way the reference outputs were made."""
    return Program(task_id, code, func_name, calls_src=split_rounds(example_str), n_calls=n_calls,
                   compat="case2code", **kwargs)
