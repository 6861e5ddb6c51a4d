"""Run harvested functions on their inputs in the sandbox, twice, and decide what to keep.

Pass A runs each function (imports + constants + helpers + function) on its candidate inputs; pass B runs the
same programs in a second pool whose interpreters use another string-hash seed (other workers, other
address-space layouts). A function whose outcomes differ between the passes is nondeterministic and dropped.
Per input we then drop reprs that leak addresses (`at 0x`), calls that produced no outcome (timeout, crash),
and, for type-guessed inputs, TypeError/AttributeError outcomes (the guess was wrong). The keep rule follows,
and the survivors' final rendered rows are run once more exactly as the Case2Code eval runs them
(`case2code_program` over `example_str`) and must reproduce the recorded outcomes.

Keep rule (ours, stricter than the paper's and documented in WORKSPACE.md): at least 5 inputs that return,
at least 3 distinct outcomes, and exceptions on at most 30% of the inputs. `official=True` keeps the paper's
rule instead: drop only when the program failed, the counts disagree, or every outcome is an exception.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from typing import Iterable

from evals.execution import Program, ProgramResult, SandboxPool, case2code_program, to_case2code
from case2code_finetune.progress import Progress

ADDRESS_RE = re.compile(r"at 0x[0-9a-fA-F]+")
TYPE_GUESS_ERRORS = ("<class 'TypeError'>", "<class 'AttributeError'>")


@dataclasses.dataclass(frozen=True)
class KeepRule:
    official: bool = False
    n_inputs: int = 10           # most inputs kept per function
    min_returns: int = 5
    min_distinct: int = 3
    max_exception_share: float = 0.3


def programs_for(rows: list[dict], inputs: dict[str, list[dict]]) -> list[Program]:
    return [Program(r["id"], r["code"], r["func_name"],
                    calls=[{"kwargs_src": kw["src"]} for kw in inputs[r["id"]]])
            for r in rows if inputs.get(r["id"])]


def run_pass(pool: SandboxPool, programs: list[Program], journal: str, what: str) -> dict[str, ProgramResult]:
    """All programs through `pool`, resumable from `journal` (finished programs are not run again)."""
    prog = Progress(what, len(programs))
    out = {}
    for res in pool.run(programs, journal=journal, progress_every=0):
        out[res.task_id] = res
        prog.update(len(out))
    prog.finish()
    return out


def outcome_strings(res: ProgramResult) -> list[dict | None]:
    return [to_case2code(c) for c in res.calls]


def _is_error(o: dict) -> bool:
    return "error" in o


def select(row: dict, inputs: list[dict], res_a: ProgramResult | None, res_b: ProgramResult | None,
           rule: KeepRule, counts: Counter) -> tuple[list[dict], list[dict]] | str:
    """(kept inputs, their outcomes) or the reason the function is dropped."""
    if res_a is None or res_b is None or len(res_a.calls) != len(inputs) or len(res_b.calls) != len(inputs):
        return "failed"
    out_a, out_b = outcome_strings(res_a), outcome_strings(res_b)
    if all(o is None for o in out_a):
        return "failed"
    counts["executed"] += 1
    # Address-leaking reprs differ between interpreters by nature: drop those inputs before comparing passes.
    leak = [any(o is not None and ADDRESS_RE.search(o.get("return", o.get("error", ""))) for o in pair)
            for pair in zip(out_a, out_b)]
    counts["inputs_address_leak"] += sum(leak)
    if [o for o, bad in zip(out_a, leak) if not bad] != [o for o, bad in zip(out_b, leak) if not bad]:
        return "nondeterministic"
    counts["deterministic"] += 1
    kept_in, kept_out = [], []
    for kw, o, bad in zip(inputs, out_a, leak):
        if bad:
            continue
        if o is None:
            counts["inputs_no_outcome"] += 1
            if rule.official:
                return "failed"
            continue
        text = o.get("return", o.get("error", ""))
        if kw.get("origin") == "typed" and _is_error(o) and any(t in text for t in TYPE_GUESS_ERRORS):
            counts["inputs_wrong_type_guess"] += 1
            continue
        kept_in.append(kw)
        kept_out.append(o)
    kept_in, kept_out = kept_in[:rule.n_inputs], kept_out[:rule.n_inputs]
    if not kept_out:
        return "no_inputs_left"
    n_err = sum(_is_error(o) for o in kept_out)
    if rule.official:
        return "all_exceptions" if n_err == len(kept_out) else (kept_in, kept_out)
    if len(kept_out) - n_err < rule.min_returns:
        return "too_few_returns"
    if len({json.dumps(o, sort_keys=True) for o in kept_out}) < rule.min_distinct:
        return "too_few_distinct_outputs"
    if n_err > rule.max_exception_share * len(kept_out):
        return "too_many_exceptions"
    return kept_in, kept_out


def example_str(inputs: Iterable[dict]) -> str:
    """Case2Code's `example_str`: source that defines `examples`, one `dict(...)` per line."""
    lines = "".join(f"    {kw['src']},\n" for kw in inputs)
    return f"examples = [\n{lines}]"


def final_programs(records: list[dict]) -> list[Program]:
    """Each kept record's program exactly as the eval will run it (`code` + `example_str`)."""
    return [case2code_program(r["id"], r["code"], r["func_name"], r["example_str"], len(r["example_outputs"]))
            for r in records]


def reproduced(record: dict, res: ProgramResult | None) -> bool:
    return res is not None and outcome_strings(res) == record["example_outputs"]
