"""Sandboxed verdicts for Case2Code answers, and the gold ceiling (the rows' own functions, same judge).

Every answer runs in `evals.execution` exactly as the reference outputs were recorded (`case2code_program`:
the extracted code, then the row's `example_str`, as `__main__`, one fresh namespace per generation round) on
**all** of the row's inputs. The parent compares each call's canonical outcome with the recorded one by exact
string equality (an exception matches only by type and message). Verdicts never come from the program's
stdout, so printed markers, patched `json`/`repr` inside the sandbox, or a dead interpreter cannot pass.

Status of one answer (first that applies):
  truncated     the completion hit the token limit (the official harness counts it wrong, unexecuted)
  no_code       nothing to run after extraction
  syntax_error  the code does not compile;  load_error: it raised while being defined
  timeout / memory / crash / output_too_large / sandbox_error   (from the sandbox)
  passed        every input matched;  wrong_output: anything else (a mismatch or an unexpected exception)
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Iterable, Iterator

from evals.case2code.protocol import extract_code
from evals.execution import Limits, SandboxPool, case2code_program, outputs_match
from evals.execution.canonical import BadExpected
from evals.execution.case2code_check import REASONS, classify_call

log = logging.getLogger(__name__)
# The official harness gave each program 10 s in all; a call may use the whole budget.
JUDGE_LIMITS = Limits(wall_s=10.0, program_wall_s=10.0)
STATUSES = ("passed", "wrong_output", "syntax_error", "load_error", "timeout", "memory", "crash",
            "output_too_large", "sandbox_error", "truncated", "no_code", "missing")
_SANDBOX_STATUS = {"timeout": "timeout", "memory": "memory", "crash": "crash", "output_too_large": "output_too_large",
                   "worker_died": "sandbox_error", "protocol_error": "sandbox_error"}


def _match(call: dict, expected: dict) -> bool:
    try:
        return outputs_match(call, expected)
    except BadExpected:
        return False  # an unreadable gold outcome can be matched by nothing


def _status(result, matches: list[bool]) -> str:
    if matches and all(matches):
        return "passed"
    first = result.calls[0] if result.calls else {}
    if first.get("note") == "program failed at import":
        return "syntax_error" if first.get("exc") == "SyntaxError" else "load_error"
    if result.status in _SANDBOX_STATUS:
        return _SANDBOX_STATUS[result.status]
    if any(c.get("status") == "error" and c.get("output") is None for c in result.calls):
        return "crash"  # the interpreter went away without an outcome (os._exit, a signal)
    return "wrong_output"


def judge(pool: SandboxPool, rows_by_id: dict[str, dict], answers: Iterable[dict], *,
          limits: Limits | None = None, progress_every: float = 10.0) -> Iterator[dict]:
    """answers: {"id", "completion", "sample"?, "finish_reason"?, "code"?} (with "code", no extraction).
    Yields one verdict per answer, in completion order: id, sample, passed, n_inputs, n_matched, status,
    extract, code, verdicts (per input), first_mismatch. `limits` overrides the pool's for these programs."""
    answers = list(answers)
    programs, pending = [], {}
    t0 = time.monotonic()
    for k, a in enumerate(answers):
        row = rows_by_id[a["id"]]
        n = len(row["example_outputs"])
        base = {"id": a["id"], "sample": a.get("sample", 0), "passed": False, "n_inputs": n, "n_matched": 0}
        if "code" in a:
            code, how = a["code"], "given"
        else:
            code, how = extract_code(a.get("completion") or "")
        base.update(extract=how, code=code)
        if a.get("finish_reason") == "length":
            yield {**base, "status": "truncated", "verdicts": []}
            continue
        if not code.strip():
            yield {**base, "status": "no_code", "verdicts": []}
            continue
        pending[str(k)] = base
        programs.append(case2code_program(str(k), code, row["func_name"], row["example_str"], n, limits=limits))
    done = 0
    last = time.monotonic()
    for res in pool.run(programs, progress_every=0):
        base = pending.pop(res.task_id)
        row = rows_by_id[base["id"]]
        matches = [_match(c, g) for c, g in zip(res.calls, row["example_outputs"])]
        matches += [False] * (len(row["example_outputs"]) - len(matches))
        status = _status(res, matches)
        verdict = {**base, "passed": status == "passed", "n_matched": sum(matches), "status": status,
                   "verdicts": matches}
        if status != "passed":
            i = next((i for i, m in enumerate(matches) if not m), None)
            if i is not None:
                call = res.calls[i] if i < len(res.calls) else {}
                verdict["first_mismatch"] = {"input": i, "expected": row["example_outputs"][i],
                                             "got": call.get("output"), "call_status": call.get("status"),
                                             "note": call.get("note")}
        verdict["_calls"] = res.calls  # for the gold classifier; dropped before writing
        done += 1
        now = time.monotonic()
        if progress_every and now - last > progress_every:
            rate = done / (now - t0)
            log.info("judged %d/%d programs (%.1f/s, ETA %.0fs)", done, len(programs), rate,
                     (len(programs) - done) / max(rate, 1e-9))
            last = now
        yield verdict


def gold_ceiling(pool: SandboxPool, rows: list[dict]) -> tuple[dict, dict[str, dict]]:
    """Run every row's reference function through the same judge. -> (summary, verdict by id).
    Each miss is explained by the classes of `evals.execution.case2code_check`."""
    by_id = {r["id"]: r for r in rows}
    verdicts, misses, per_class = {}, [], collections.Counter()
    for v in judge(pool, by_id, ({"id": r["id"], "code": r["code"]} for r in rows)):
        calls = v.pop("_calls", [])
        verdicts[v["id"]] = v
        if v["passed"]:
            continue
        row = by_id[v["id"]]
        classes = collections.Counter()
        for i, (ok, g) in enumerate(zip(v["verdicts"], row["example_outputs"])):
            if not ok:
                classes[classify_call(calls[i], g, row["code"]) if i < len(calls) else "unexplained"] += 1
        if not classes:
            classes[v["status"]] += 1
        for c in classes:
            per_class[c] += 1
        misses.append({"id": v["id"], "func": row["func_name"], "status": v["status"],
                       "bad_inputs": sum(classes.values()), "n_inputs": v["n_inputs"], "classes": dict(classes)})
    passed = sum(v["passed"] for v in verdicts.values())
    misses.sort(key=lambda m: m["id"])
    return ({"rows": len(rows), "passed": passed, "rate": passed / max(len(rows), 1),
             "misses_by_class": dict(per_class), "reasons": {c: REASONS.get(c, c) for c in per_class},
             "misses": misses}, verdicts)
