"""Judge predictions and aggregate them per task × variant × setting.

Input lines: `{"id": "<task>/<variant>/<index>", "setting": "...", "completion": "..."}` (extra keys ignored).
- Direct settings: the task's parser finds the answer; none found = a parse failure.
- `solverlearner`: the first fenced block defining `solver`, the completion read as a continuation of the
  prompt's "```python" lead or, for a chat model, on its own (see `common.extract_solver`); none = a parse
  failure. Every function runs in one `SandboxPool` for the whole batch, on the query's input only; the
  parent keeps the gold, reads back the return value's repr (a literal, parsed with `ast.literal_eval`) and
  judges it. Timeouts, crashes, exceptions and non-literal returns are wrong answers (their status is counted
  in `exec_status`); what the function prints never matters.
Accuracy = correct / every prediction of the cell (parse failures count as wrong and are also reported apart).
Lines with an unknown task, variant, index or setting, or that are not JSON objects, are counted in
`bad_lines` and skipped.
"""
from __future__ import annotations

import ast
import collections
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from evals.execution import Program
from evals.solverlearner.common import ENTRY, SETTINGS, extract_solver, split_id
from evals.solverlearner.prompts import CODE_LEAD
from evals.solverlearner.tasks import ProblemBank

log = logging.getLogger(__name__)
MAX_REPR_CHARS = 100_000


def cell_key(task: str, variant: str, setting: str) -> str:
    return f"{task}/{variant}/{setting}"


def read_predictions(path: Path, bad: collections.Counter) -> list[dict]:
    rows = []
    with Path(path).open() as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad["not_json"] += 1
                continue
            if not isinstance(row, dict) or not isinstance(row.get("completion"), str):
                bad["malformed"] += 1
                continue
            rows.append(row)
    return rows


def literal_from_canonical(output: Any) -> tuple[bool, Any]:
    """The sandbox reports `json.dumps(repr(value))`; turn it back into a Python literal when it is one."""
    try:
        text = json.loads(output)
        if not isinstance(text, str) or len(text) > MAX_REPR_CHARS:
            return False, None
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _jsonable(answer: Any) -> Any:
    if isinstance(answer, dict):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in answer.items()}
    if isinstance(answer, tuple):
        return list(answer)
    return answer


def judge_predictions(rows: Iterable[dict], bank: ProblemBank, *, pool=None,
                      journal: str | Path | None = None) -> tuple[list[dict], collections.Counter]:
    """-> (one judged record per accepted row, in input order; counts of skipped lines)."""
    bad: collections.Counter = collections.Counter()
    judged: list[dict] = []
    programs = []  # (record index, Program)
    for row in rows:
        parts = split_id(row.get("id"))
        setting = row.get("setting")
        if parts is None:
            bad["bad_id"] += 1
            continue
        if setting not in SETTINGS:
            bad["unknown_setting"] += 1
            continue
        problem = bank.lookup(*parts)
        if problem is None:
            bad["unknown_id"] += 1
            continue
        task = bank.tasks[problem.task]
        rec = {"id": problem.id, "setting": setting, "task": problem.task, "variant": problem.variant,
               "gold": _jsonable(problem.gold), "answer": None, "parse_failure": False, "correct": False,
               "parts_correct": 0, "parts": 1, "finish_reason": row.get("finish_reason")}
        completion = row["completion"]
        if setting == "solverlearner":
            code = extract_solver(completion, CODE_LEAD)
            if code is None:
                rec["parse_failure"] = True
            else:
                digest = hashlib.sha256(code.encode()).hexdigest()[:16]
                tid = f"{problem.id}|{digest}"
                programs.append((len(judged), problem, Program(tid, code, ENTRY,
                                                               [{"kwargs": task.solver_kwargs(problem)}])))
        else:
            answer = task.parse(completion, problem)
            if answer is None:
                rec["parse_failure"] = True
            else:
                v = task.judge(answer, problem)
                rec.update(answer=_jsonable(answer), correct=v.correct, parts_correct=v.parts_correct,
                           parts=v.parts)
        if rec["parse_failure"] and problem.task == "spatial":
            rec["parts"] = len(problem.meta["objects"])
        judged.append(rec)
    if programs:
        if pool is None:
            raise ValueError("solverlearner predictions need a SandboxPool")
        _execute(programs, judged, bank, pool, journal)
    return judged, bad


def _execute(programs, judged, bank, pool, journal) -> None:
    by_tid: dict[str, list] = collections.defaultdict(list)
    unique = {}
    for idx, problem, prog in programs:
        by_tid[prog.task_id].append((idx, problem))
        unique.setdefault(prog.task_id, prog)  # the same function on the same query runs once
    t0 = last = time.monotonic()
    done = 0
    for res in pool.run(unique.values(), journal=journal):
        done += 1
        call = res.calls[0] if res.calls else {"status": res.status, "output": None}
        for idx, problem in by_tid[res.task_id]:
            rec = judged[idx]
            task = bank.tasks[problem.task]
            rec["exec_status"] = call.get("status", res.status)
            if rec["exec_status"] != "ok":
                continue
            ok, value = literal_from_canonical(call.get("output"))
            answer = task.from_solver_output(value, problem) if ok else None
            if answer is None:
                rec["exec_status"] = "bad_return"
                continue
            v = task.judge(answer, problem)
            rec.update(answer=_jsonable(answer), correct=v.correct, parts_correct=v.parts_correct, parts=v.parts)
        now = time.monotonic()
        if now - last > 10 or done == len(unique):
            rate = done / max(now - t0, 1e-9)
            log.info("sandbox: %d/%d functions, %.0f/s, ETA %.0f s", done, len(unique), rate,
                     (len(unique) - done) / max(rate, 1e-9))
            last = now


def aggregate(judged: list[dict], bad: collections.Counter | None = None) -> dict:
    """The summary: accuracy / parse_failures / n per cell, object accuracy for spatial, exec statuses."""
    n = collections.Counter()
    correct = collections.Counter()
    fails = collections.Counter()
    parts = collections.Counter()
    parts_ok = collections.Counter()
    exec_status: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in judged:
        k = cell_key(r["task"], r["variant"], r["setting"])
        n[k] += 1
        correct[k] += bool(r["correct"])
        fails[k] += bool(r["parse_failure"])
        parts[k] += r["parts"]
        parts_ok[k] += r["parts_correct"]
        if r["setting"] == "solverlearner":
            exec_status[k]["no_code" if r["parse_failure"] else r.get("exec_status", "not_run")] += 1
    keys = sorted(n)
    out = {"accuracy": {k: correct[k] / n[k] for k in keys},
           "parse_failures": {k: fails[k] for k in keys},
           "n": {k: n[k] for k in keys},
           "object_accuracy": {k: parts_ok[k] / parts[k] for k in keys if k.startswith("spatial/")},
           "exec_status": {k: dict(sorted(exec_status[k].items())) for k in keys if k in exec_status},
           "bad_lines": dict(sorted((bad or {}).items()))}
    return out
