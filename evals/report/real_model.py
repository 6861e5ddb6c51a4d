"""The real pretrained model's section of the main job's report: where its weights came from, which slice of each
eval it ran, its headline numbers with 95% intervals beside the demo's own models, and what they show, in
sentences written from those numbers (so the words cannot drift from the tables).

Inputs (all in the run directory): `pretrained.json` (stage 12_pretrained), `case2code_eval/<model>/<set>/results.json`,
`solverlearner/<row>/results.json`, `dynamicqa/<model>/summary.json` + `scores.jsonl`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from evals.report.document import Missing, Paragraph, Section, Table
from evals.report.intervals import bootstrap_mean, wilson

REAL = "smollm2"
DIRECT_SETTINGS = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot")
FACT_TYPES = ("static", "temporal", "disputable")


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} ({k}/{n}) [{lo:.3f}, {hi:.3f}]" if n else "—"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------------------------- Case2Code

def _case2code(run_dir: Path, others: list[str], rows: list, said: list[str], missing: list[str]) -> None:
    found = 0
    for data in ("synthetic", "official"):
        r = _json(run_dir / "case2code_eval" / REAL / data / "results.json")
        if r is None:    # models.sh may leave a set out on purpose; said below only when both are absent
            continue
        found += 1
        summ, cfg = r["summary"], r["config"]
        counts = summ.get("counts_by_status", {})
        n, k = summ["n_rows"], counts.get("passed", 0)
        total = r.get("data_rows_in_file")
        slice_ = (f"first {n} of {total if total else '?'} rows, greedy, ≤{cfg.get('max_new_tokens')} new tokens"
                  + (", chat template" if cfg.get("chat") else ""))
        theirs = []
        for m in others:
            o = _json(run_dir / "case2code_eval" / m / data / "results.json")
            if o:
                theirs.append(f"{m} {o['summary'].get('counts_by_status', {}).get('passed', 0)}/{o['summary']['n_rows']}")
        rows.append(["Case2Code", data, slice_, "pass@1", rate(k, n), ", ".join(theirs) or "—"])
        lo, hi = wilson(k, n)
        rest = ", ".join(f"{st} {c}" + (" (ran to the token limit)" if st == "truncated" else "")
                         for st, c in sorted(counts.items()) if st != "passed")
        if k:
            head = f"On Case2Code ({data} rows) SmolLM2 writes a function that reproduces every input of {k} of {n} rows (pass@1 {k / n:.3f}, 95% CI {lo:.3f}–{hi:.3f})"
        else:
            head = (f"On Case2Code ({data} rows) SmolLM2 passes none of {n} rows; so few rows only bound its "
                    f"pass@1 below {hi:.3f} (95%)")
        said.append(head + (f"; its other answers: {rest}" if rest else "") + ".")
    if not found:
        missing.append(f"case2code_eval/{REAL}/<set>/results.json")


# ------------------------------------------------------------------------------------------ SolverLearner

def _correct(summary: dict, key: str) -> tuple[int, int]:
    n = summary["n"].get(key, 0)
    return round(summary["accuracy"].get(key, 0.0) * n), n


def _solverlearner(run_dir: Path, others: list[str], rows: list, said: list[str], missing: list[str]) -> None:
    from evals.solverlearner.tasks import make_tasks
    base = run_dir / "solverlearner"
    s = _json(base / REAL / "results.json")
    if s is None:
        missing.append(f"solverlearner/{REAL}/results.json")
        return
    everyday = {name: t.everyday_variant for name, t in make_tasks().items()}
    cells = [k.split("/") for k in s["accuracy"]]
    avail = s.get("problems_available", {})
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
        per_cell = s["n"].get(f"{task}/{daily}/{DIRECT_SETTINGS[0]}")
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
    solved = [_correct(s, k) for k in s["accuracy"] if k.endswith("/solverlearner")]
    ks, ns = sum(k for k, _ in solved), sum(n for _, n in solved)
    if ns:
        rows.append(["SolverLearner", "all tasks", "same problems", "solver written by the model, run in the sandbox",
                     rate(ks, ns), "—"])
    theirs = []
    for m in others:
        o = _json(base / m / "results.json")
        if o:
            got = [_correct(o, k) for k in o["accuracy"]]
            theirs.append(f"{m} {sum(k for k, _ in got)}/{sum(n for _, n in got)}")
    if theirs:
        mine = [_correct(s, k) for k in s["accuracy"]]
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
    oracle = _json(base / "oracle" / "results.json")
    if oracle and oracle.get("accuracy"):
        ok = all(v == 1.0 for v in oracle["accuracy"].values())
        said.append("The oracle row reads 1.0 in every cell, so a right answer is scored right." if ok else
                    "The oracle row is below 1.0 somewhere: the harness, not the model, is at fault there.")


# ---------------------------------------------------------------------------------------------- DynamicQA

def _dynamicqa(run_dir: Path, others: list[str], rows: list, said: list[str], missing: list[str]) -> None:
    d = run_dir / "dynamicqa" / REAL
    summ = _json(d / "summary.json")
    if summ is None or not (d / "scores.jsonl").is_file():
        missing.append(f"dynamicqa/{REAL}/summary.json and scores.jsonl")
        return
    items: dict[str, dict[str, list[float]]] = {}
    for line in (d / "scores.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for metric in ("semantic_entropy", "coherent_persuasion"):
            v = rec.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                items.setdefault(rec["fact_type"], {}).setdefault(metric, []).append(float(v))
    means: dict[str, dict[str, tuple[float, float, float]]] = {}
    for t in FACT_TYPES:
        if t not in summ.get("by_type", {}):
            continue
        load = summ.get("load", {}).get(t, {})
        slice_ = (f"first {load.get('rows')} of {load.get('rows_in_file', '?')} rows "
                  f"({summ['by_type'][t].get('items')} items), 10 samples each")
        for metric, name in (("semantic_entropy", "SE"), ("coherent_persuasion", "CP")):
            vals = items.get(t, {}).get(metric, [])
            if not vals:
                continue
            lo, hi = bootstrap_mean(vals)
            mean = sum(vals) / len(vals)
            means.setdefault(name, {})[t] = (mean, lo, hi)
            theirs = []
            for m in others:
                o = _json(run_dir / "dynamicqa" / m / "summary.json")
                v = (o or {}).get("by_type", {}).get(t, {}).get(metric)
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


def section(run_dir: Path, others: list[str]) -> Section:
    """`others`: the labels of the demo's own models, compared with the real one."""
    s = Section("A real pretrained model beside the demo's: SmolLM2-135M-Instruct")
    rec = _json(run_dir / "pretrained.json")
    if rec is None:
        return s.add(Missing(f"{run_dir / 'pretrained.json'} (stage 12_pretrained has not run, or set-up did not "
                             "cache the model file: scripts/setup.sh --models)"))
    c = rec.get("model_config", {})
    s.add(Paragraph(
        f"The demo's own models are too small and too briefly trained to answer, so every eval also runs a real "
        f"pretrained model: {rec.get('name')} ({c.get('num_layers')} layers, hidden {c.get('hidden_size')}, "
        f"{c.get('num_heads')} heads / {c.get('num_kv_heads')} KV heads, vocabulary {c.get('vocab_size')}), imported "
        f"from the Q4_1 GGUF file {Path(str(rec.get('source'))).name} (sha256 {str(rec.get('sha256'))[:12]}…) into "
        "this project's checkpoint format with its tokenizer and chat template. It is asked through its chat "
        "template (the answer lead, where an eval has one, already written in its turn) and decodes in bf16. Its "
        "slices are small, to keep the main job within 30 minutes on 2 cores; each row says which. Intervals are "
        "95%: Wilson for proportions, a bootstrap over items for DynamicQA's means."))
    rows: list[list] = []
    said: list[str] = []
    missing: list[str] = []
    for part in (_case2code, _solverlearner, _dynamicqa):
        part(run_dir, others, rows, said, missing)
    if rows:
        s.add(Table(["eval", "part", "slice", "measure", "SmolLM2 [95% CI]", "the demo's own models"], rows))
    if said:
        s.add(Paragraph("What the numbers show: " + " ".join(said)))
    for what in missing:
        s.add(Missing(f"{run_dir / what} (its eval stage has not run for {REAL})"))
    return s
