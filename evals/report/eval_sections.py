"""Report sections for the Case2Code data, fine-tuning and the three evals. The evals' numbers come from their
EvalRecords only, found through the run layout (never from their Markdown views), and the models are the
run's manifest's."""
from __future__ import annotations

import json
from pathlib import Path

from evals.case2code.protocol import OFFICIAL_MEAN_HIDDEN
from evals.report.document import Figure, Missing, Paragraph, Section, Table
from evals.report.intervals import wilson
from evals.solverlearner.report import format_cell
from patch_training.contract.layout import RunLayout
from patch_training.contract.records import EvalRecord

SOLVERLEARNER_SETTINGS = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot", "solverlearner")


def eval_records(layout: RunLayout, eval_name: str) -> list[tuple[str, str | None, EvalRecord]]:
    """(model, part, record) of every record the eval wrote in this run, in the manifest's model order."""
    return [(model, part, EvalRecord.read(path)) for model, part, path in layout.eval_records(eval_name)]


def missing_models(layout: RunLayout, eval_name: str, found: list[tuple[str, str | None, EvalRecord]],
                   stage: str) -> list[Missing]:
    """A line for each manifest model the eval has no record of."""
    have = {m for m, _, _ in found}
    return [Missing(f"{layout.eval_dir(eval_name, m.name)} (stage {stage} has not run for {m.name}, or "
                    "scripts/demo_lib/models.sh leaves it out)") for m in layout.models() if m.name not in have]


def solverlearner_section(layout: RunLayout) -> Section:
    s = Section("SolverLearner: deductive vs inductive reasoning (arithmetic, syntax, spatial, cipher)")
    found = eval_records(layout, "solverlearner")
    if not found:
        return s.add(Missing(f"{layout.eval_dir('solverlearner', '<model>')}/record.json (stage 50_solverlearner "
                             "has not run)"))
    s.add(Paragraph(
        "Each task has an everyday variant (base 10, SVO order, the default direction map, shift 0) and a "
        "counterfactual one. Settings: deductive zero-/few-shot (the rule is stated), inductive few-shot (only "
        "demonstrations; the model answers), and SolverLearner (the same demonstrations; the model writes a Python "
        "`solver` that the sandbox runs on the query). The oracle row answers with the true rule and must read 1.0 "
        "everywhere; the rule-blind row always assumes the everyday rule and must read 1.0 on the everyday variants "
        "and about 0 on the counterfactual ones. Between them they show the harness measures what it claims. A parse "
        "failure counts as wrong. n = problems per cell (the demo keeps it small)."))
    settings = [st for st in SOLVERLEARNER_SETTINGS
                if any(c["setting"] == st for _, _, r in found for c in r.table("cells"))]
    rows = []
    for model, _, record in found:
        cells: dict[tuple[str, str], dict[str, dict]] = {}
        for c in record.table("cells"):
            cells.setdefault((c["task"], c["variant"]), {})[c["setting"]] = c
        rows += [[model, task, variant] + [format_cell(by.get(st), missing=None) for st in settings]
                 for (task, variant), by in sorted(cells.items())]
    s.add(Table(["model", "task", "variant"] + settings, rows,
                "Accuracy = correct / all predictions of the cell; [k pf] = k parse failures (counted wrong); "
                "spatial shows room accuracy and obj = per-object accuracy (centroid rule)."))
    s.add(*missing_models(layout, "solverlearner", found, "50_solverlearner"))
    slices = _solverlearner_slices(found)
    if slices:
        s.add(Paragraph(slices))
    for model, part, record in found:
        chart = layout.eval_dir("solverlearner", model, part) / "chart.png"
        if chart.is_file():
            s.add(Figure(chart, f"SolverLearner, {model}: accuracy per variant and setting"))
    return s


def _solverlearner_slices(found: list[tuple[str, str | None, EvalRecord]]) -> str | None:
    """Which slice each row ran: the first n problems of each variant, and how many each variant has."""
    ns, avail = [], {}
    for model, _, record in found:
        sizes = sorted({c["n"] for c in record.table("cells")})
        if sizes:
            ns.append(f"{model} {'/'.join(map(str, sizes))}")
        avail.update({f"{v['task']}/{v['variant']}": v["problems_available"] for v in record.table("variants")})
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


def case2code_data_section(layout: RunLayout, fig_dir: Path) -> Section:
    s = Section("Case2Code data synthesised from real Python functions")
    path = layout.stage_dir("case2code_data") / "funnel.json"
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


def _dynamicqa_rows(label: str, record: EvalRecord) -> list[list]:
    load = {r["fact_type"]: r for r in record.table("load")}
    rows = []
    for m in record.table("by_type"):
        ld = load.get(m["fact_type"], {})
        of = f"{ld.get('rows')} of {ld['rows_in_file']}" if ld.get("rows_in_file") else ld.get("rows")
        rows.append([label, m["fact_type"], of, m.get("items"), m.get("semantic_entropy"), m.get("coherent_persuasion"),
                     m.get("persuaded"), m.get("stubborn"), m.get("mean_q_only_groups")])
    return rows


def dynamicqa_section(layout: RunLayout) -> Section:
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
    found = eval_records(layout, "dynamicqa")
    s.add(*missing_models(layout, "dynamicqa", found, "60_dynamicqa"))
    rows, figures = [], []
    for model, part, record in found:
        rows += _dynamicqa_rows(model, record)
        png = layout.eval_dir("dynamicqa", model, part) / "distributions.png"
        if png.is_file():
            figures.append(Figure(png, f"{model}: SE and CP per fact type"))
    if rows:
        s.add(Table(["model", "fact type", "rows (of file)", "items", "SE", "CP", "persuaded", "stubborn",
                     "q-only groups"], rows))
    elif not found:
        s.add(Missing(f"{layout.eval_dir('dynamicqa', '<model>')}/record.json (stage 60_dynamicqa has not run)"))
    s.add(*figures)
    return s


def case2code_eval_section(layout: RunLayout) -> Section:
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
    found = eval_records(layout, "case2code")
    if not found:
        s.add(Missing(f"{layout.eval_dir('case2code', '<model>', '<set>')}/record.json (stage 40_case2code_eval has "
                      "not run)"))
    s.add(*missing_models(layout, "case2code", found, "40_case2code_eval"))
    rows, figures = [], []
    for model, data, record in found:
        summ, cfg = record.summary, record.config
        statuses = ", ".join(f"{r['status']} {r['answers']}" for r in record.table("statuses"))
        hidden = summ.get("hidden_inputs_mean")
        n, total = summ.get("n_rows"), summ.get("data_rows_in_file")
        lo, hi = wilson(summ.get("passed", 0), n) if n else (None, None)
        gold = (f"{summ.get('gold_passed')}/{summ.get('gold_rows')}" if summ.get("gold_rows") is not None else None)
        rows.append([model, data, f"{n} of {total}" if total else n, summ.get("pass_at_1"),
                     None if lo is None else f"{lo:.3f}–{hi:.3f}",
                     None if hidden is None else round(hidden, 1), summ.get("gold_ceiling"), gold,
                     cfg.get("max_new_tokens"), bool(cfg.get("chat")), statuses, summ.get("wall_s")])
        png = layout.eval_dir("case2code", model, data) / "results.png"
        if png.is_file() and data == "synthetic":
            figures.append(Figure(png, f"Case2Code on the synthetic test split, {model}: pass rate by number "
                                       "of shown examples and by status"))
    if rows:
        s.add(Table(["model", "data", "rows (of file)", "pass@1", "95% CI", "hidden inputs/row", "gold ceiling",
                     "gold passed", "max new tokens", "chat", "statuses", "wall (s)"], rows))
    s.add(*figures)
    return s


def finetune_section(layout: RunLayout) -> Section:
    s = Section("Case2Code fine-tuning (direct variant)")
    ft = layout.stage_dir("finetune")
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
