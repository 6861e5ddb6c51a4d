"""The two stages: `generate` (prompts -> predictions.jsonl, resumable) and `score` (predictions -> judged.jsonl
and the EvalRecord). `run` is both in a row."""
from __future__ import annotations

import collections
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from evals.model_api import LanguageModel, Sampling
from evals.solverlearner import report
from evals.solverlearner.common import Problem
from evals.provenance import check_run_record
from evals.solverlearner.prompts import lead_prompt
from evals.solverlearner.record import make_record
from evals.solverlearner.scoring import aggregate, judge_predictions, read_predictions
from evals.solverlearner.tasks import ProblemBank
from patch_training.contract.layout import record_file
from patch_training.errors import UserError

log = logging.getLogger(__name__)


def select_items(bank: ProblemBank, cells: list[tuple[str, str]], settings: list[str],
                 limit: int | None) -> list[tuple[Problem, str]]:
    """(problem, setting) pairs: the first `limit` problems of each variant (all when None), every setting."""
    items = []
    for task, variant in cells:
        probs = bank.problems(task, variant)
        for p in probs[:limit] if limit else probs:
            items.extend((p, s) for s in settings)
    return items


def generate(model: LanguageModel, bank: ProblemBank, items: list[tuple[Problem, str]], out: Path, *,
             direct_sampling: Sampling, code_sampling: Sampling, batch_size: int = 16,
             config: dict[str, Any] | None = None) -> Path:
    """Write `out/predictions.jsonl`; lines already there (same run config) are kept and not asked again."""
    out = Path(out)
    check_run_record(out / "run.json", dict(config or {}, model=model.fingerprint, direct_sampling=direct_sampling.key(),
                                code_sampling=code_sampling.key()))
    path = out / "predictions.jsonl"
    done = collections.Counter()
    if path.is_file():
        text = path.read_text()
        kept = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
                done[(row["id"], row["setting"])] += 1
                kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a killed run: dropped here, asked again below
        if len(kept) != len(text.splitlines()) or (text and not text.endswith("\n")):
            path.write_text("".join(k + "\n" for k in kept))
    todo = []
    for p, s in items:
        if done[(p.id, s)]:
            done[(p.id, s)] -= 1
        else:
            todo.append((p, s))
    log.info("generate: %d of %d prompts to ask (%d already in %s)", len(todo), len(items),
             len(items) - len(todo), path)
    t0 = last_log = time.monotonic()
    with path.open("a") as f:
        for kind, sampling in (("direct", direct_sampling), ("code", code_sampling)):
            group = [(p, s) for p, s in todo if (s == "solverlearner") == (kind == "code")]
            for start in range(0, len(group), batch_size):
                batch = group[start:start + batch_size]
                prompts = [lead_prompt(bank.tasks[p.task], p, s) for p, s in batch]
                outs = model.generate(prompts, 1, sampling)
                for (p, s), comps in zip(batch, outs):
                    c = comps[0]
                    f.write(json.dumps({"id": p.id, "setting": s, "completion": c.text,
                                        "finish_reason": c.finish_reason}) + "\n")
                f.flush()
                n_done = start + len(batch)
                now = time.monotonic()
                if now - last_log < 10 and n_done < len(group):
                    continue
                last_log = now
                rate = n_done / max(now - t0, 1e-9)
                log.info("generate %s: %d/%d, %.1f prompts/s, ETA %.0f s", kind, n_done, len(group), rate,
                         (len(group) - n_done) / max(rate, 1e-9))
            t0 = time.monotonic()
    return path


def data_hash(bank: ProblemBank, ids: Iterable[str]) -> str:
    """The evaluated problems' identity: id, input, gold and demonstrations of each, in id order (the data
    files and the generated cipher problems alike)."""
    from evals.provenance import records_hash
    from evals.solverlearner.common import split_id

    problems = [bank.lookup(*split_id(i)) for i in sorted(set(ids))]
    return records_hash([p.id, p.input, p.gold, list(p.demos)] for p in problems if p is not None)


def score(predictions: Path, bank: ProblemBank, out: Path, *, workers: int | None = None, pool=None,
          title: str = "SolverLearner", model_name: str | None = None, model_fingerprint: str | None = None,
          config: dict | None = None) -> dict:
    """Judge `predictions` (sandbox for solverlearner lines), write judged.jsonl, the EvalRecord (record.json,
    its data hash over the problems judged here) and its human views; -> the aggregate summary.
    With `pool` given it is used (and left open); otherwise one is started for this batch when needed."""
    from evals.execution import Limits, SandboxPool

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not Path(predictions).is_file():
        raise UserError(f"--predictions {predictions} does not exist")
    bad = collections.Counter()
    rows = read_predictions(Path(predictions), bad)
    own_pool = None
    # The pool starts before any gold is loaded (the house rule for the sandbox), and only when needed.
    if pool is None and any(r.get("setting") == "solverlearner" for r in rows):
        pool = own_pool = SandboxPool(workers, limits=Limits(wall_s=2.0, program_wall_s=10.0))
    try:
        judged, bad_rows = judge_predictions(rows, bank, pool=pool, journal=out / "exec_journal.jsonl")
    finally:
        if own_pool is not None:
            own_pool.close()
    bad.update(bad_rows)
    with (out / "judged.jsonl").open("w") as f:
        for rec in judged:
            f.write(json.dumps(rec) + "\n")
    summary = aggregate(judged, bad)
    # How many problems each judged variant has in all, so a slice (`--limit`) can say "n of N".
    variants = sorted({(r["task"], r["variant"]) for r in judged})
    summary["problems_available"] = {f"{t}/{v}": len(bank.problems(t, v)) for t, v in variants}
    if bad:
        log.warning("skipped prediction lines: %s", dict(bad))
    record = make_record(summary, model_name=model_name, model_fingerprint=model_fingerprint,
                         data_path=str(bank.data_dir), data_hash=data_hash(bank, (r["id"] for r in judged)),
                         config=dict(config or {}, predictions=str(predictions)))
    record.write(record_file(out))
    report.write_views(record, out, title)
    return summary
