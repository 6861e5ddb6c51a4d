"""The real pretrained model's section of the main job's report: where its weights came from, which slice of each
eval it ran, its headline numbers with 95% intervals beside the demo's own models, and what they show, in
sentences written from those numbers (so the words cannot drift from the tables).

Inputs (all through the run layout): the manifest's model of kind `pretrained` (stage 12_pretrained) and the
other models beside it, and each eval's EvalRecord for them (DynamicQA's per-item scores from the file its record
names).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from evals.report.document import Missing, Paragraph, Section, Table
from evals.report.intervals import bootstrap_mean, wilson
from patch_training.contract.layout import ModelEntry, RunLayout
from patch_training.contract.records import EvalRecord

DIRECT_SETTINGS = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot")
FACT_TYPES = ("static", "temporal", "disputable")


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} ({k}/{n}) [{lo:.3f}, {hi:.3f}]" if n else "—"


def _record(layout: RunLayout, eval_name: str, model: str, part: str | None = None) -> EvalRecord | None:
    path = layout.record_path(eval_name, model, part)
    return EvalRecord.read(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------------- Case2Code

def _case2code(layout: RunLayout, real: str, others: list[str], rows: list, said: list[str],
               missing: list[str]) -> None:
    found = 0
    # the data sets it ran (models.sh may leave one out on purpose; said below only when there is none)
    for data in [part for model, part, _ in layout.eval_records("case2code") if model == real]:
        r = _record(layout, "case2code", real, data)
        found += 1
        summ, cfg = r.summary, r.config
        counts = {row["status"]: row["answers"] for row in r.table("statuses")}
        n, k = summ["n_rows"], summ.get("passed", 0)
        total = summ.get("data_rows_in_file")
        slice_ = (f"first {n} of {total if total else '?'} rows, greedy, ≤{cfg.get('max_new_tokens')} new tokens"
                  + (", chat template" if cfg.get("chat") else ""))
        theirs = []
        for m in others:
            o = _record(layout, "case2code", m, data)
            if o:
                theirs.append(f"{m} {o.summary.get('passed', 0)}/{o.summary['n_rows']}")
        rows.append(["Case2Code", data, slice_, "pass@1", rate(k, n), ", ".join(theirs) or "—"])
        lo, hi = wilson(k, n)
        rest = ", ".join(f"{st} {c}" + (" (ran to the token limit)" if st == "truncated" else "")
                         for st, c in sorted(counts.items()) if st != "passed")
        if k:
            head = f"On Case2Code ({data} rows) {real} writes a function that reproduces every input of {k} of {n} rows (pass@1 {k / n:.3f}, 95% CI {lo:.3f}–{hi:.3f})"
        else:
            head = (f"On Case2Code ({data} rows) {real} passes none of {n} rows; so few rows only bound its "
                    f"pass@1 below {hi:.3f} (95%)")
        said.append(head + (f"; its other answers: {rest}" if rest else "") + ".")
    if not found:
        missing.append(str(layout.record_path("case2code", real, "<set>")))


# ------------------------------------------------------------------------------------------ SolverLearner

def _cells(record: EvalRecord) -> dict[str, tuple[int, int]]:
    """'task/variant/setting' -> (correct, n)."""
    return {f"{c['task']}/{c['variant']}/{c['setting']}": (c["correct"], c["n"]) for c in record.table("cells")}


def _correct(cells: dict[str, tuple[int, int]], key: str) -> tuple[int, int]:
    return cells.get(key, (0, 0))


def _solverlearner(layout: RunLayout, real: str, others: list[str], rows: list, said: list[str],
                   missing: list[str]) -> None:
    from evals.solverlearner.tasks import make_tasks
    record = _record(layout, "solverlearner", real)
    if record is None:
        missing.append(str(layout.record_path("solverlearner", real)))
        return
    s = _cells(record)
    everyday = {name: t.everyday_variant for name, t in make_tasks().items()}
    cells = [k.split("/") for k in s]
    avail = {f"{v['task']}/{v['variant']}": v["problems_available"] for v in record.table("variants")}
    ahead, separated, compared = [], [], []
    for task in sorted({t for t, _, _ in cells}):
        variants = sorted({v for t, v, _ in cells if t == task})
        daily = everyday.get(task)
        if daily not in variants or len(variants) < 2:
            continue
        pooled = {}
        for v in variants:
            ks = [_correct(s, f"{task}/{v}/{st}") for st in DIRECT_SETTINGS]
            pooled[v] = (sum(k for k, _ in ks), sum(n for _, n in ks))
        counter = [v for v in variants if v != daily]
        kc, nc = sum(pooled[v][0] for v in counter), sum(pooled[v][1] for v in counter)
        per_cell = s.get(f"{task}/{daily}/{DIRECT_SETTINGS[0]}", (None, None))[1]
        slice_ = f"first {per_cell} of {avail.get(f'{task}/{daily}', '?')} problems per variant, 3 direct settings"
        rows.append(["SolverLearner", task, slice_, f"{daily} (everyday) vs {', '.join(counter)}",
                     f"{rate(*pooled[daily])} vs {rate(kc, nc)}", "—"])
        ke, ne = pooled[daily]
        if ne and nc:
            compared.append(task)
            pe, pc = ke / ne, kc / nc
            if pe > pc:
                ahead.append(f"{task} {daily} {pe:.2f} vs {'/'.join(counter)} {pc:.2f}")
                if wilson(ke, ne)[0] > wilson(kc, nc)[1]:
                    separated.append(task)
    solved = [_correct(s, k) for k in s if k.endswith("/solverlearner")]
    ks, ns = sum(k for k, _ in solved), sum(n for _, n in solved)
    if ns:
        rows.append(["SolverLearner", "all tasks", "same problems", "solver written by the model, run in the sandbox",
                     rate(ks, ns), "—"])
    theirs = []
    for m in others:
        o = _record(layout, "solverlearner", m)
        if o:
            theirs.append(f"{m} {o.summary['correct']}/{o.summary['predictions']}")
    if theirs:
        mine = list(s.values())
        rows.append(["SolverLearner", "all cells", "as above", "correct answers, every setting",
                     rate(sum(k for k, _ in mine), sum(n for _, n in mine)), ", ".join(theirs)])
    if compared:
        text = (f"SolverLearner, pooled over the three direct-answer settings: the everyday rule scores above the "
                f"counterfactual one in {len(ahead)} of {len(compared)} tasks"
                + (f" ({'; '.join(ahead)})" if ahead else ""))
        text += (f"; the 95% intervals separate the two in {', '.join(separated)}" if separated else
                 "; no task's 95% intervals separate the two") + "."
        if "arithmetic" in compared:
            above = any(a.startswith("arithmetic ") for a in ahead)
            text += (" Base-10 arithmetic is above the counterfactual base, as the paper expects" if above else
                     " Base-10 arithmetic is not above the counterfactual base here, against the paper")
            text += (", and the intervals show it." if "arithmetic" in separated else
                     ", but within the intervals: this slice cannot show the gap.")
        said.append(text)
    if ns:
        said.append(f"The solvers the model writes pass {ks} of {ns} problems" +
                    (", far from the paper's near-1 SolverLearner accuracy (which came from much larger models)."
                     if ks * 4 < ns else "."))
    oracle = _record(layout, "solverlearner", "oracle")
    if oracle and oracle.table("cells"):
        ok = all(c["accuracy"] == 1.0 for c in oracle.table("cells"))
        said.append("The oracle row reads 1.0 in every cell, so a right answer is scored right." if ok else
                    "The oracle row is below 1.0 somewhere: the harness, not the model, is at fault there.")


# ---------------------------------------------------------------------------------------------- DynamicQA

def _dynamicqa(layout: RunLayout, real: str, others: list[str], rows: list, said: list[str],
               missing: list[str]) -> None:
    record = _record(layout, "dynamicqa", real)
    scores = None if record is None or not record.items_path else (
        layout.eval_dir("dynamicqa", real) / record.items_path)
    if record is None or scores is None or not scores.is_file():
        missing.append(f"{layout.record_path('dynamicqa', real)} and the per-item scores it names")
        return
    by_type = {r["fact_type"]: r for r in record.table("by_type")}
    load = {r["fact_type"]: r for r in record.table("load")}
    items: dict[str, dict[str, list[float]]] = {}
    for line in scores.read_text().splitlines():
        rec = json.loads(line)
        for metric in ("semantic_entropy", "coherent_persuasion"):
            v = rec.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                items.setdefault(rec["fact_type"], {}).setdefault(metric, []).append(float(v))
    means: dict[str, dict[str, tuple[float, float, float]]] = {}
    for t in FACT_TYPES:
        if t not in by_type:
            continue
        ld = load.get(t, {})
        slice_ = (f"first {ld.get('rows')} of {ld.get('rows_in_file') or '?'} rows "
                  f"({by_type[t].get('items')} items), 10 samples each")
        for metric, name in (("semantic_entropy", "SE"), ("coherent_persuasion", "CP")):
            vals = items.get(t, {}).get(metric, [])
            if not vals:
                continue
            lo, hi = bootstrap_mean(vals)
            mean = sum(vals) / len(vals)
            means.setdefault(name, {})[t] = (mean, lo, hi)
            theirs = []
            for m in others:
                o = _record(layout, "dynamicqa", m)
                v = next((r.get(metric) for r in (o.table("by_type") if o else []) if r["fact_type"] == t), None)
                if isinstance(v, (int, float)):
                    theirs.append(f"{m} {v:.2f}")
            rows.append(["DynamicQA", t, slice_, name, f"{mean:.3f} [{lo:.3f}, {hi:.3f}]", ", ".join(theirs) or "—"])
    # The paper: temporal and disputable facts get higher SE (less certain) and lower CP (more easily moved).
    for name, want, word in (("SE", 1, "higher"), ("CP", -1, "lower")):
        m = means.get(name, {})
        if "static" not in m:
            continue
        s_mean, s_lo, s_hi = m["static"]
        parts, apart_any = [], False
        for t in ("temporal", "disputable"):
            if t not in m:
                continue
            mean, lo, hi = m[t]
            apart = lo > s_hi or hi < s_lo
            apart_any |= apart
            parts.append(f"{t} {mean:.2f} ({'as the paper' if (mean - s_mean) * want > 0 else 'against the paper'}, "
                         f"{'intervals apart' if apart else 'intervals overlap'})")
        said.append(f"DynamicQA {name}, which the paper finds {word} for temporal and disputable facts than for "
                    f"static ones: static {s_mean:.2f}, {', '.join(parts)}"
                    + ("." if apart_any else "; these few rows cannot test the claim."))


def real_model(layout: RunLayout) -> ModelEntry | None:
    """The run's model brought in from outside (the manifest's first of kind `pretrained`)."""
    return next((m for m in layout.models() if m.kind == "pretrained"), None)


def section(layout: RunLayout) -> Section:
    """The real model beside the run's own models (the manifest's `trained` ones)."""
    entry = real_model(layout)
    if entry is None:
        return Section("A real pretrained model beside the demo's", [Missing(
            f"{layout.manifest_path} lists no pretrained model (stage 12_pretrained has not run, or set-up did not "
            "cache the model file: scripts/setup.sh --models)")])
    info = entry.info
    title = info.get("display_name") or entry.name
    s = Section(f"A real pretrained model beside the demo's: {title}")
    c = info.get("model_config", {})
    s.add(Paragraph(
        f"The demo's own models are too small and too briefly trained to answer, so every eval also runs a real "
        f"pretrained model: {title} ({c.get('num_layers')} layers, hidden {c.get('hidden_size')}, "
        f"{c.get('num_heads')} heads / {c.get('num_kv_heads')} KV heads, vocabulary {c.get('vocab_size')}), imported "
        f"from the file {Path(str(entry.source)).name} (sha256 {str(info.get('sha256'))[:12]}…; checkpoint "
        f"fingerprint {entry.fingerprint}) into "
        "this project's checkpoint format with its tokenizer and chat template. It is asked through its chat "
        "template (the answer lead, where an eval has one, already written in its turn) and decodes in bf16. Its "
        "slices are small, to keep the main job within 30 minutes on 2 cores; each row says which. Intervals are "
        "95%: Wilson for proportions, a bootstrap over items for DynamicQA's means."))
    others = [m.name for m in layout.models() if m.kind != "pretrained"]
    rows: list[list] = []
    said: list[str] = []
    missing: list[str] = []
    for part in (_case2code, _solverlearner, _dynamicqa):
        part(layout, entry.name, others, rows, said, missing)
    if said:    # the reading first, the table it is read from after
        s.add(Paragraph("What the numbers show: " + " ".join(said)))
    if rows:
        s.add(Table(["eval", "part", "slice", "measure", f"{entry.name} [95% CI]", "the demo's own models"], rows))
    for what in missing:
        s.add(Missing(f"{what} (its eval stage has not run for {entry.name})"))
    return s
