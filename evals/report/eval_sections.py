"""Report sections for the Case2Code data, fine-tuning and the three evals, read from their output files."""
from __future__ import annotations

import json
from pathlib import Path

from evals.case2code.protocol import OFFICIAL_MEAN_HIDDEN
from evals.report.document import Figure, Missing, Paragraph, Section, Table
from evals.report.intervals import wilson


def tables_from_markdown(text: str) -> list[Table]:
    """The pipe tables of a Markdown text (the evals' own `results.md` / `table.md`) as Table blocks."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(Table(rows[0], rows[1:]))
            rows = []
    return tables


def solverlearner_section(run_dir: Path) -> Section:
    s = Section("SolverLearner: deductive vs inductive reasoning (arithmetic, syntax, spatial, cipher)")
    out = run_dir / "solverlearner"
    table = out / "table.md"
    if not table.is_file():
        return s.add(Missing(f"{table} (stage 50_solverlearner has not run)"))
    s.add(Paragraph(
        "Each task has an everyday variant (base 10, SVO order, the default direction map, shift 0) and a "
        "counterfactual one. Settings: deductive zero-/few-shot (the rule is stated), inductive few-shot (only "
        "demonstrations; the model answers), and SolverLearner (the same demonstrations; the model writes a Python "
        "`solver` that the sandbox runs on the query). The oracle row answers with the true rule and must read 1.0 "
        "everywhere; the rule-blind row always assumes the everyday rule and must read 1.0 on the everyday variants "
        "and about 0 on the counterfactual ones. Between them they show the harness measures what it claims. A parse "
        "failure counts as wrong. n = problems per cell (the demo keeps it small)."))
    for t in tables_from_markdown(table.read_text()):
        s.add(t)
    slices = _solverlearner_slices(out)
    if slices:
        s.add(Paragraph(slices))
    for row in sorted(p for p in out.iterdir() if p.is_dir()):
        chart = row / "chart.png"
        if chart.is_file():
            s.add(Figure(chart, f"SolverLearner, {row.name}: accuracy per variant and setting"))
    return s


def _solverlearner_slices(out: Path) -> str | None:
    """Which slice each row ran: the first n problems of each variant, and how many each variant has."""
    ns, avail = [], {}
    for row in sorted(p for p in out.iterdir() if p.is_dir()):
        path = row / "results.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        sizes = sorted(set(r.get("n", {}).values()))
        if sizes:
            ns.append(f"{row.name} {'/'.join(map(str, sizes))}")
        avail.update(r.get("problems_available", {}))
    if not ns:
        return None
    text = "Slices: the first n problems of each variant, n = " + ", ".join(ns)
    if avail:
        text += "; problems each variant has: " + ", ".join(f"{k} {v}" for k, v in sorted(avail.items()))
    return text + "."


def _funnel_plot(stages: list[tuple[str, int]], out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(stages) + 1))
    names = [n for n, _ in stages][::-1]
    counts = [c for _, c in stages][::-1]
    ax.barh(names, counts, color="#4c78a8")
    ax.set_xscale("log")
    for y, c in enumerate(counts):
        ax.text(c, y, f" {c}", va="center", fontsize=8)
    ax.set_xlabel("functions (rows for the split counts), log scale")
    ax.set_title("Case2Code synthesis funnel")
    fig.tight_layout()
    path = out / "case2code_funnel.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def case2code_data_section(run_dir: Path, fig_dir: Path) -> Section:
    s = Section("Case2Code data synthesised from real Python functions")
    path = run_dir / "case2code_data" / "funnel.json"
    if not path.is_file():
        return s.add(Missing(f"{path} (stage 30_case2code_synthesis has not run)"))
    funnel = json.loads(path.read_text())
    stages = [(str(n), int(c)) for n, c in funnel["stages"]]
    settings = funnel.get("settings", {})
    s.add(Paragraph(
        f"Functions harvested from this interpreter's standard library and installed packages (at most "
        f"{settings.get('max_functions')} in the demo), filtered, given model-free typed inputs "
        f"({settings.get('inputs')}), run twice in the sandbox under different hash seeds, kept when they return "
        "enough distinct values, then rendered as prompts: varied formats for training, the official test format "
        "for validation and test (so the Case2Code eval scores our held-out split unchanged). Exact, near-duplicate "
        "and behavioural duplicates and anything overlapping the official test set are removed."))
    s.add(Table(["stage", "count"], stages, f"Funnel; wall {funnel.get('elapsed_s', 0):.0f} s."))
    drops = sorted(funnel.get("drops", {}).items(), key=lambda kv: -kv[1])
    if drops:
        s.add(Table(["drop reason", "functions"], drops[:15], "Largest drop reasons."))
    s.add(Figure(_funnel_plot(stages, fig_dir), "Case2Code synthesis funnel (log scale)."))
    return s


def _dynamicqa_rows(label: str, summary: dict) -> list[list]:
    rows = []
    for fact_type, m in summary.get("by_type", {}).items():
        load = summary.get("load", {}).get(fact_type, {})
        of = f"{load.get('rows')} of {load['rows_in_file']}" if load.get("rows_in_file") else load.get("rows")
        rows.append([label, fact_type, of, m.get("items"), m.get("semantic_entropy"), m.get("coherent_persuasion"),
                     m.get("persuaded"), m.get("stubborn"), m.get("mean_q_only_groups")])
    return rows


def dynamicqa_section(run_dir: Path, models: list[tuple[str, str]]) -> Section:
    """`models`: (label, output subdirectory of RUN_DIR) for each model the stage evaluated."""
    s = Section("DynamicQA: knowledge conflict (semantic entropy, coherent persuasion)")
    s.add(Paragraph(
        "Each question is asked alone (q-only) and with a context that states the gold answer or a substitute. "
        "10 samples per prompt at temperature 0.5. Semantic entropy (SE = 5 − mean over answer groups of "
        "logsumexp(−mean NLL)) measures how much the model's own answers disagree without context; coherent "
        "persuasion (CP, the mean KL between the context groups' and the q-only groups' averaged token "
        "distributions) measures how far the context moves it. Persuaded: the context answer matches the context "
        "(ROUGE-L > 0.3); stubborn: it is wrong and repeats the q-only answer. The paper's claim is higher SE and "
        "lower CP for temporal and disputable facts than for static ones; a CPU demo model on a handful of rows "
        "cannot test that, it shows the pipeline end to end (the real model's numbers, with intervals, are in its own "
        "section). The demo groups answers with the ROUGE judge; the "
        "paper's NLI judge runs with --judge nli --nli_dir."))
    rows, figures = [], []
    for label, sub in models:
        path = run_dir / sub / "summary.json"
        if not path.is_file():
            s.add(Missing(f"{path} ({label}: stage 60_dynamicqa has not run for it)"))
            continue
        rows += _dynamicqa_rows(label, json.loads(path.read_text()))
        if (run_dir / sub / "distributions.png").is_file():
            figures.append(Figure(run_dir / sub / "distributions.png", f"{label}: SE and CP per fact type"))
    if rows:
        s.add(Table(["model", "fact type", "rows (of file)", "items", "SE", "CP", "persuaded", "stubborn",
                     "q-only groups"], rows))
    s.add(*figures)
    return s


def case2code_eval_section(run_dir: Path, models: list[str]) -> Section:
    s = Section("Case2Code eval: can the model write the function behind input/output examples?")
    s.add(Paragraph(
        "The official protocol (REFERENCE §2): the row's prompt plus the official call-signature reminder, greedy "
        "decoding, the code taken by the official extractor (the first ```python block, else the first bare ``` block, "
        "else the whole answer), run in the sandbox on all of the row's inputs "
        "(shown and hidden), every output compared exactly; a row passes only when all match, and an answer cut "
        "off by the token limit counts as wrong. `synthetic` is the held-out test split the synthesis stage wrote "
        "(functions disjoint from training), `official` a slice of the paper's 500-row test set. The gold ceiling "
        "runs each row's own reference function through the same judge: it is the best score the judge allows on "
        "those rows. Hidden inputs/row is the mean number of inputs the prompt does not show: the official rows hide "
        f"{OFFICIAL_MEAN_HIDDEN}, our synthetic split fewer (its functions keep at most 10 inputs), so its pass@1 is "
        "an easier test and reads higher. The demo's own models are cut far below the protocol's 2,048 new tokens (their "
        "answers would not finish anyway), so most end as `truncated`; the real model keeps 2,048 on a smaller slice "
        "and is asked through its chat template. The interval is Wilson's, 95%."))
    base = run_dir / "case2code_eval"
    rows, figures = [], []
    for model in models:
        for data in ("synthetic", "official"):
            path = base / model / data / "results.json"
            if not path.is_file():
                s.add(Missing(f"{path} (stage 40_case2code_eval has not run for {model} on {data}, or "
                              "scripts/demo_lib/models.sh leaves that model out of that set)"))
                continue
            r = json.loads(path.read_text())
            summ = r["summary"]
            gold = summ.get("gold", {})
            statuses = ", ".join(f"{k} {v}" for k, v in summ.get("counts_by_status", {}).items())
            hidden = summ.get("inputs_per_row", {}).get("hidden", {}).get("mean")
            n, total = summ.get("n_rows"), r.get("data_rows_in_file")
            passed = summ.get("counts_by_status", {}).get("passed", 0)
            lo, hi = wilson(passed, n) if n else (None, None)
            rows.append([model, data, f"{n} of {total}" if total else n, summ.get("pass_at_1"),
                         None if lo is None else f"{lo:.3f}–{hi:.3f}",
                         None if hidden is None else round(hidden, 1), summ.get("gold_ceiling"),
                         f"{gold.get('passed')}/{gold.get('rows')}" if gold else None,
                         r["config"].get("max_new_tokens"), bool(r["config"].get("chat")), statuses,
                         r.get("wall_s", {}).get("total")])
            png = path.parent / "results.png"
            if png.is_file() and data == "synthetic":
                figures.append(Figure(png, f"Case2Code on the synthetic test split, {model}: pass rate by number "
                                           "of shown examples and by status"))
    if rows:
        s.add(Table(["model", "data", "rows (of file)", "pass@1", "95% CI", "hidden inputs/row", "gold ceiling",
                     "gold passed", "max new tokens", "chat", "statuses", "wall (s)"], rows))
    s.add(*figures)
    return s


def finetune_section(run_dir: Path) -> Section:
    s = Section("Case2Code fine-tuning (direct variant)")
    ft = run_dir / "finetune_direct"
    path = ft / "finetune.json"
    if not path.is_file():
        return s.add(Missing(f"{path} (stage 35_finetune has not run)"))
    summary = json.loads(path.read_text())
    s.add(Paragraph(
        "The patch run's final token-level checkpoint is fine-tuned on the synthesised training split: prompt and "
        "answer packed into one row, loss on answer tokens only, parameters taken over with a fresh optimizer and "
        "schedule. The validation split (unseen functions) is scored the same way before the first step and after "
        "the last."))
    rows = []
    for name in sorted(set(summary.get("before") or {}) | set(summary.get("after") or {})):
        b = (summary.get("before") or {}).get(name) or {}
        a = (summary.get("after") or {}).get(name) or {}
        rows.append([name, b.get("loss"), a.get("loss"), b.get("perplexity"), a.get("perplexity")])
    s.add(Table(["validation set", "answer loss before", "answer loss after", "ppl before", "ppl after"], rows,
                f"Status {summary.get('status')} at step {summary.get('final_step')}; started from "
                f"{summary.get('init_checkpoint')}."))
    curve = ft / "loss_curve.png"
    if curve.is_file():
        s.add(Figure(curve, "Fine-tuning loss curve (answer tokens only)"))
    return s
