"""From answers to verdicts and a summary: shared by `run` (our model's answers) and `score` (anyone's).

Predictions file: JSONL, one `{"id": ..., "completion": "..."}` per sample (several lines per id = several
samples, in order); `finish_reason: "length"` marks a completion cut off by the token limit. Malformed lines
and unknown ids are counted, never fatal; rows with no prediction count as failed ("missing").
"""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import numpy as np

from evals.case2code.judge import STATUSES, gold_ceiling, judge
from evals.case2code.passk import summarize
from evals.case2code.protocol import OFFICIAL_MIN_HIDDEN
from evals.execution import SandboxPool
from patch_training.errors import UserError


def read_predictions(path: str | Path, known_ids: set[str]) -> tuple[list[dict], dict[str, Any]]:
    """-> (answers with per-id sample indices, problems: counts + a few examples)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"predictions file not found: {p}")
    answers, per_id = [], collections.Counter()
    malformed, unknown, examples = 0, 0, []
    with p.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or "id" not in obj or not isinstance(obj.get("completion"), str):
                malformed += 1
                if len(examples) < 5:
                    examples.append(f"line {lineno}: not an object with 'id' and a string 'completion'")
                continue
            pid = str(obj["id"])
            if pid not in known_ids:
                unknown += 1
                if len(examples) < 5:
                    examples.append(f"line {lineno}: unknown id {pid[:40]!r}")
                continue
            answers.append({"id": pid, "completion": obj["completion"], "sample": per_id[pid],
                            "finish_reason": obj.get("finish_reason")})
            per_id[pid] += 1
    if answers == [] and malformed and not unknown:
        raise UserError(f"{p}: no line is a prediction ({malformed} malformed; is it JSONL of "
                        '{"id": ..., "completion": ...}?)')
    return answers, {"malformed_lines": malformed, "unknown_ids": unknown, "examples": examples}




def input_counts(rows: list[dict]) -> dict[str, Any]:
    """Shown and hidden inputs per row: shown = the prompt's examples (`choosed_example_idx`), hidden = the rest
    of the row's inputs, which the judge runs too. -> {"shown": {mean,min,max}, "hidden": {...},
    "rows_hiding_fewer_than_20": n}."""
    shown = [len(set(r.get("choosed_example_idx") or [])) for r in rows]
    hidden = [len(r["example_outputs"]) - k for r, k in zip(rows, shown)]

    def stats(xs: list[int]) -> dict[str, float]:
        return {"mean": float(np.mean(xs)), "min": int(min(xs)), "max": int(max(xs))} if xs else {}
    return {"shown": stats(shown), "hidden": stats(hidden),
            f"rows_hiding_fewer_than_{OFFICIAL_MIN_HIDDEN}": sum(h < OFFICIAL_MIN_HIDDEN for h in hidden)}


def score(pool: SandboxPool, rows: list[dict], answers: list[dict], *, with_gold: bool = True) -> tuple[list[dict], dict]:
    """Judge every answer (and the gold functions). -> (verdicts sorted by row order and sample, summary)."""
    by_id = {r["id"]: r for r in rows}
    verdicts = []
    for v in judge(pool, by_id, answers):
        v.pop("_calls", None)
        verdicts.append(v)
    order = {r["id"]: i for i, r in enumerate(rows)}
    verdicts.sort(key=lambda v: (order[v["id"]], v["sample"]))
    flags: dict[str, list[bool]] = {r["id"]: [] for r in rows}
    for v in verdicts:
        flags[v["id"]].append(v["passed"])
    n_max = max((len(f) for f in flags.values()), default=0) or 1
    missing = [i for i, f in flags.items() if not f]
    per_problem = [f if f else [False] * n_max for f in flags.values()]
    status = collections.Counter(v["status"] for v in verdicts)
    status["missing"] = len(missing)
    summary: dict[str, Any] = {
        "n_rows": len(rows), "n_predictions": len(answers), "rows_without_predictions": len(missing),
        "samples_per_row": {"min": min(map(len, per_problem)), "max": n_max},
        "pass_at_1": float(np.mean([np.mean(f) for f in per_problem])),
        "counts_by_status": {s: status[s] for s in STATUSES if status[s]},
        "extraction": dict(collections.Counter(v["extract"] for v in verdicts)),
    }
    ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= n_max]
    summary.update({"pass_at_k_unbiased": {}, "first_k_pass_official": {}})
    for name, value in summarize(per_problem, ks).items():
        k = name.split("@")[-1] if "@" in name else name.split("_")[1]
        summary["pass_at_k_unbiased" if name.startswith("pass@") else "first_k_pass_official"][k] = value
    summary["inputs_per_row"] = input_counts(rows)
    by_shown = collections.defaultdict(list)
    for r, f in zip(rows, per_problem):
        by_shown[len(r.get("choosed_example_idx") or [])].append(float(np.mean(f)))
    summary["pass_at_1_by_shown_examples"] = {str(k): {"rows": len(v), "pass_at_1": float(np.mean(v))}
                                              for k, v in sorted(by_shown.items())}
    if with_gold:
        gold, gold_verdicts = gold_ceiling(pool, rows)
        summary["gold_ceiling"] = gold["rate"]
        summary["gold"] = gold
        solvable = [f for r, f in zip(rows, per_problem) if gold_verdicts[r["id"]]["passed"]]
        summary["pass_at_1_on_gold_solvable"] = float(np.mean([np.mean(f) for f in solvable])) if solvable else 0.0
        gold_by_shown = collections.defaultdict(list)
        for r in rows:
            gold_by_shown[len(r.get("choosed_example_idx") or [])].append(gold_verdicts[r["id"]]["passed"])
        for k, v in gold_by_shown.items():
            summary["pass_at_1_by_shown_examples"][str(k)]["gold"] = float(np.mean(v))
    return verdicts, summary
