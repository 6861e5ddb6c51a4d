"""Stage 2: score saved samples with no model: groups, SE, CP, persuaded / stubborn, aggregates, plots.

Reads `samples.jsonl` (one line per (id, condition); a sample's distribution is inline as `dist` or a
`dist_ref` row of a distribution file next to it) and writes `scores.jsonl` (one line per id) and
`distributions.png`; the summary it returns becomes the run's EvalRecord (`record`). Lines and distributions that break the format are counted by
reason; an item with bad distributions keeps its SE and persuaded / stubborn verdicts and gets
`coherent_persuasion: null` with the reason.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evals.dynamicqa.clustering import complete_link_groups, official_groups, official_partition
from evals.dynamicqa.data import FACT_TYPES
from evals.dynamicqa.dist_store import DistReader
from evals.dynamicqa.judges import Judge
from evals.dynamicqa.prompts import CONDITIONS, CONTEXT, Q_ONLY
from evals.dynamicqa.scores import coherent_persuasion, persuaded, semantic_entropy, stubborn
from patch_training.errors import UserError

SUM_TOLERANCE = 2e-3   # float32 softmax averages sum to 1 within ~1e-6; float16 storage within ~1e-3


class DistProblem(Exception):
    """A sample's distribution breaks the format (reason in the message)."""


@dataclasses.dataclass
class ScoreOptions:
    official_clustering: bool = False
    sum_tolerance: float = SUM_TOLERANCE
    use_question: bool = True      # pass the question to the judge (only NLI with_question uses it)


def read_samples(path: Path, problems: collections.Counter) -> dict[str, dict[str, dict]]:
    """id -> condition -> record; malformed lines are counted and skipped."""
    if not path.is_file():
        raise UserError(f"samples file not found: {path}")
    records: dict[str, dict[str, dict]] = {}
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                problems["line is not JSON"] += 1
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                problems["line without a string id"] += 1
                continue
            if rec.get("condition") not in CONDITIONS:
                problems["unknown condition"] += 1
                continue
            samples = rec.get("samples")
            if not isinstance(samples, list) or not samples or not all(
                    isinstance(s, dict) and isinstance(s.get("text"), str) for s in samples):
                problems["no samples / sample without text"] += 1
                continue
            if not isinstance(rec.get("gold"), str):
                problems["no gold answer"] += 1
                continue
            records.setdefault(rec["id"], {})[rec["condition"]] = rec
    return records


def fact_type_of(item_id: str, rec: dict) -> str:
    t = rec.get("fact_type") or item_id.split("/", 1)[0]
    return t if t in FACT_TYPES else "other"


class DistLoader:
    """Distributions of one record's samples, checked: same length everywhere, finite, sum to 1."""

    def __init__(self, base_dir: Path, tolerance: float):
        self.reader = DistReader(base_dir)
        self.tolerance = tolerance
        self.vocab_size: int | None = None

    def load(self, samples: list[dict]) -> list[np.ndarray | None]:
        """One vector per sample; None for a sample saved without one (an empty answer)."""
        out: list[np.ndarray | None] = []
        for s in samples:
            if s.get("dist") is None and s.get("dist_ref") is None:
                out.append(None)
                continue
            if s.get("dist") is not None:
                d = np.asarray(s["dist"], dtype=np.float64)
            elif "dist_ref" in s:
                ref = s["dist_ref"]
                try:
                    d = self.reader.row(str(ref["file"]), int(ref["row"]))
                except (KeyError, TypeError, ValueError) as e:
                    raise DistProblem(f"bad dist_ref ({e})") from None
            if d.ndim != 1 or len(d) == 0:
                raise DistProblem("distribution is not a vector")
            if self.vocab_size is None:
                self.vocab_size = len(d)
            elif len(d) != self.vocab_size:
                raise DistProblem("distribution length differs")
            if not np.all(np.isfinite(d)) or np.any(d < 0):
                raise DistProblem("distribution has negative or non-finite entries")
            if abs(d.sum() - 1.0) > self.tolerance:
                raise DistProblem("distribution does not sum to 1")
            out.append(d)
        return out


def _as_float(value: Any) -> float:
    """A sample's mean NLL; missing or non-numeric (JSON null for an empty answer) becomes nan."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _groups(judge: Judge, texts: list[str], question: str | None, official: bool
            ) -> tuple[list[list[int]], list[list[int]]]:
    """(groups for CP, partition for SE): the same partition unless the official quirk is on."""
    equiv = judge.equivalence(texts, question)
    if official:
        groups = official_groups(equiv)
        return groups, official_partition(groups, len(texts))
    groups = complete_link_groups(equiv)
    return groups, groups


def score_item(item_id: str, conds: dict[str, dict], judge: Judge, dists: DistLoader,
               options: ScoreOptions, problems: collections.Counter,
               group_cache: dict) -> dict[str, Any]:
    q, c = conds[Q_ONLY], conds[CONTEXT]
    question = c.get("question") if options.use_question else None
    q_texts = [s["text"] for s in q["samples"]]
    c_texts = [s["text"] for s in c["samples"]]

    def grouped(texts):
        # The q-only samples repeat for both variants of a row; judge them once.
        key = (question, tuple(texts))
        if key not in group_cache:
            if len(group_cache) > 64:      # ids arrive in file order; a small cache is enough
                group_cache.clear()
            group_cache[key] = _groups(judge, texts, question, options.official_clustering)
        return group_cache[key]

    q_groups, q_partition = grouped(q_texts)
    c_groups, _ = grouped(c_texts)
    nll = [_as_float(s.get("mean_nll")) for s in q["samples"]]
    gold = c["gold"]
    row: dict[str, Any] = {
        "id": item_id, "fact_type": fact_type_of(item_id, c), "gold": gold,
        "semantic_entropy": semantic_entropy(nll, q_partition),
        "coherent_persuasion": None,
        "persuaded": persuaded(c_texts[0], gold),
        "stubborn": stubborn(c_texts[0], q_texts[0], gold),
        "persuaded_rate": float(np.mean([persuaded(t, gold) for t in c_texts])),
        "stubborn_rate": float(np.mean([stubborn(a, b, gold) for a, b in zip(c_texts, q_texts)])),
        "groups_q_only": q_groups, "groups_context": c_groups,
        "answers_q_only": q_texts, "answers_context": c_texts,
    }
    if row["semantic_entropy"] is None:
        problems["no finite NLL for SE"] += 1
    try:
        c_dists, q_dists = dists.load(c["samples"]), dists.load(q["samples"])
        # Samples without a distribution leave their group; groups left empty leave the pairs.
        c_cp = [m for m in ([i for i in g if c_dists[i] is not None] for g in c_groups) if m]
        q_cp = [m for m in ([i for i in g if q_dists[i] is not None] for g in q_groups) if m]
        if not c_cp or not q_cp:
            raise DistProblem("no distributions on one side")
        if len(c_cp) < len(c_groups) or len(q_cp) < len(q_groups):
            problems["CP: group without distributions left out"] += 1
        cp, kls = coherent_persuasion(c_dists, c_cp, q_dists, q_cp)
        row["coherent_persuasion"], row["kl_pairs"] = cp, kls
        approx = any(s.get("approximate") for s in q["samples"] + c["samples"])
        row["cp_approximate"] = bool(approx)
    except DistProblem as e:
        problems[f"CP skipped: {e}"] += 1
        row["cp_problem"] = str(e)
    return row


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(rows: list[dict]) -> dict[str, Any]:
    by_type: dict[str, dict] = {}
    for t in sorted({r["fact_type"] for r in rows}, key=lambda t: (t not in FACT_TYPES, t)):
        rs = [r for r in rows if r["fact_type"] == t]
        by_type[t] = {
            "items": len(rs),
            "semantic_entropy": _mean([r["semantic_entropy"] for r in rs]),
            "coherent_persuasion": _mean([r["coherent_persuasion"] for r in rs]),
            "cp_items": sum(r["coherent_persuasion"] is not None for r in rs),
            "cp_approximate": any(r.get("cp_approximate") for r in rs),
            "persuaded": _mean([r["persuaded"] for r in rs]),
            "stubborn": _mean([r["stubborn"] for r in rs]),
            "mean_q_only_groups": _mean([len(r["groups_q_only"]) for r in rs]),
        }
    return by_type


def plot_distributions(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    types = [t for t in FACT_TYPES if any(r["fact_type"] == t for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "semantic_entropy", "semantic entropy (q-only)"),
                           (axes[1], "coherent_persuasion", "coherent persuasion")):
        for t in types:
            vals = [r[key] for r in rows if r["fact_type"] == t and r[key] is not None]
            if vals:
                ax.hist(vals, bins=30, alpha=0.5, density=True, label=f"{t} (n={len(vals)})")
        ax.set_title(title)
        ax.set_ylabel("density")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def score_samples(samples_path: str | Path, out_dir: str | Path, judge: Judge,
                  options: ScoreOptions = ScoreOptions(),
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score a samples file into out_dir (scores.jsonl, distributions.png); returns the summary."""
    samples_path, out_dir = Path(samples_path), Path(out_dir)
    problems: collections.Counter = collections.Counter()
    records = read_samples(samples_path, problems)
    complete = {i: c for i, c in records.items() if Q_ONLY in c and CONTEXT in c}
    if len(complete) < len(records):
        problems["id without both conditions"] += len(records) - len(complete)
    if not complete:
        raise UserError(f"{samples_path}: no id has both a q_only and a context line "
                        f"({dict(problems) or 'empty file'})")
    out_dir.mkdir(parents=True, exist_ok=True)
    dists = DistLoader(samples_path.parent, options.sum_tolerance)
    rows, cache = [], {}
    start = time.time()
    tmp = out_dir / "scores.jsonl.tmp"
    with tmp.open("w") as f:
        for k, (item_id, conds) in enumerate(complete.items(), 1):
            row = score_item(item_id, conds, judge, dists, options, problems, cache)
            f.write(json.dumps(row) + "\n")
            rows.append({key: row[key] for key in ("fact_type", "semantic_entropy", "coherent_persuasion",
                                                     "persuaded", "stubborn", "groups_q_only")}
                        | {"cp_approximate": row.get("cp_approximate", False)})
            if k % 200 == 0 or k == len(complete):
                rate = k / max(time.time() - start, 1e-9)
                log(f"dynamicqa score: {k}/{len(complete)} ids ({rate:.1f}/s, "
                    f"ETA {(len(complete) - k) / rate:.0f}s)")
    tmp.replace(out_dir / "scores.jsonl")
    summary = {"judge": judge.name, "official_clustering": options.official_clustering,
               "ids": len(rows), "by_type": summarise(rows), "problems": dict(problems)}
    plot_distributions(rows, out_dir / "distributions.png")
    return summary
