"""The study's report, built only from the run dirs: results.md, loss_vs_compute.png, summary.json.

Every number and every sentence of the statement comes from the runs' `cost.json`, `eval.json` and
`metrics.jsonl` (via `patch_training.run_summary`), so `--report_only` can rebuild it at any time,
also from a partial study (missing runs are named).

Comparisons, per patch configuration against token-only (seed means):
- final: the patch run's final loss minus token-only's final loss. This is the paper's Table 1
  comparison (patch at its lower cost vs the baseline at the full budget).
- equal compute: the patch run's final loss minus token-only's validation loss at the same training
  FLOPs, read off token-only's curve (linear in log FLOPs). Those token-only points are taken
  before its learning rate has decayed, which favours the patch run; the report says so.
A difference counts as a match when it is within two standard errors, where the standard error
combines the seed spreads of both sides; a configuration run with one seed borrows the pooled seed
spread of the seeded configurations (stated in the output).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Sequence

from benchmarks.patch_study.plan import ROW_BY_NAME, ROWS, StudyRun
from patch_training import run_summary
from patch_training.atomic import write_json_atomic, write_text_atomic

EVAL_SETS = ("code", "wikitext")
SET_LABELS = {"code": "held-out code", "wikitext": "WikiText-103"}
# REFERENCE §1, Table 1 (370M, WikiText-103 perplexity): the paper's numbers to set ours beside.
PAPER_370M_PPL = {"token_only": 10.9, "k4_lambda1_2": 10.6, "k4_lambda2_3": 10.7, "k4_lambda4_5": 11.0}
PAPER_K_ABLATION = "K = 2 and K = 4 train alike; K = 8 and 16 are somewhat worse"
MATCH_SIGMAS = 2.0


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with one value)."""
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def collect(out: Path, runs: Sequence[StudyRun]) -> tuple[list[dict], list[str]]:
    """Summaries of the finished runs, and the names of runs with no usable result."""
    rows, missing = [], []
    for run in runs:
        run_dir = out / run.name
        try:
            summary = run_summary.summarise(run.name, run_dir)
        except FileNotFoundError:
            missing.append(run.name)
            continue
        if not summary["finished"] or not summary["final"]:
            missing.append(run.name)
            continue
        summary.update(row=run.row.name, seed=run.seed)
        rows.append(summary)
    return rows, missing


def interpolate_log(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """y at x on a piecewise-linear curve in log x; None outside the curve's range."""
    pts = sorted(p for p in points if p[0] > 0)
    if not pts or x < pts[0][0] * (1 - 1e-9) or x > pts[-1][0] * (1 + 1e-9):
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y1
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return pts[-1][1]


def mean_curve(summaries: Sequence[dict], eval_set: str) -> list[tuple[float, float]]:
    """Seed-mean validation curve: the runs share eval steps, so points align by FLOPs."""
    by_x: dict[float, list[float]] = {}
    for s in summaries:
        for x, y in s["curve"].get(eval_set, []):
            by_x.setdefault(round(x, -3), []).append(y)
    n = len(summaries)
    return sorted((x, statistics.fmean(ys)) for x, ys in by_x.items() if len(ys) == n)


def aggregate(summaries: Sequence[dict]) -> list[dict]:
    """One entry per configuration: seeds, relative compute, final losses (mean, std) per set."""
    table = []
    for row in ROWS:
        mine = [s for s in summaries if s["row"] == row.name]
        if not mine:
            continue
        entry = {"row": row.name, "label": row.label, "patch_size": row.patch_size if row.patch_fraction else 1,
                 "patch_fraction": float(row.patch_fraction), "patch_fraction_text": str(row.patch_fraction),
                 "relative_cost": row.relative_cost,
                 "relative_flops_analytic": statistics.fmean(s["relative_flops_analytic"] for s in mine),
                 "total_flops": statistics.fmean(s["total_flops"] for s in mine),
                 "tokens": mine[0]["tokens"], "seeds": sorted(s["seed"] for s in mine),
                 "wall_s": statistics.fmean(s["wall_s"] for s in mine), "final": {}}
        for eval_set in EVAL_SETS:
            values = [s["final"][eval_set]["loss"] for s in mine if eval_set in s["final"]]
            if values:
                m, sd = mean_std(values)
                entry["final"][eval_set] = {"mean": m, "std": sd, "n": len(values), "values": values}
        table.append(entry)
    return table


def pooled_std(table: Sequence[dict], eval_set: str) -> float | None:
    """Seed spread pooled over the configurations with more than one seed."""
    num, den = 0.0, 0
    for e in table:
        f = e["final"].get(eval_set)
        if f and f["std"] is not None:
            num += f["std"] ** 2 * (f["n"] - 1)
            den += f["n"] - 1
    return math.sqrt(num / den) if den else None


def compare(table: Sequence[dict], summaries: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Per patch configuration and eval set: the final and the equal-compute comparison."""
    base = next((e for e in table if e["row"] == "token_only"), None)
    if base is None:
        return {}
    base_runs = [s for s in summaries if s["row"] == "token_only"]
    out: dict[str, dict[str, dict]] = {}
    for e in table:
        if e["row"] == "token_only":
            continue
        out[e["row"]] = {}
        for eval_set in EVAL_SETS:
            p, b = e["final"].get(eval_set), base["final"].get(eval_set)
            if not p or not b:
                continue
            pooled = pooled_std(table, eval_set)
            borrowed = []
            sd_p = p["std"] if p["std"] is not None else pooled
            sd_b = b["std"] if b["std"] is not None else pooled
            if p["std"] is None and pooled is not None:
                borrowed.append("patch")
            if b["std"] is None and pooled is not None:
                borrowed.append("token-only")
            se = (math.sqrt(sd_p ** 2 / p["n"] + sd_b ** 2 / b["n"])
                  if sd_p is not None and sd_b is not None else None)
            delta = p["mean"] - b["mean"]
            at_equal = interpolate_log(mean_curve(base_runs, eval_set), e["total_flops"])
            delta_eq = None if at_equal is None else p["mean"] - at_equal
            out[e["row"]][eval_set] = {
                "delta_final": delta, "stderr": se, "spread_borrowed_for": borrowed,
                "verdict_final": verdict(delta, se),
                "token_only_at_equal_compute": at_equal, "delta_equal_compute": delta_eq,
                "verdict_equal_compute": None if delta_eq is None else verdict(delta_eq, se)}
    return out


def verdict(delta: float, stderr: float | None) -> str:
    """'beats' / 'matches' / 'trails' token-only (lower loss is better); no spread: by sign alone."""
    if stderr is None:
        return "beats (no seed spread)" if delta < 0 else "trails (no seed spread)"
    if delta < -MATCH_SIGMAS * stderr:
        return "beats"
    if delta > MATCH_SIGMAS * stderr:
        return "trails"
    return "matches"


def statement(table: Sequence[dict], comparisons: dict, missing: Sequence[str]) -> list[str]:
    """Plain sentences generated from the numbers."""
    lines = []
    if not any(e["row"] == "token_only" for e in table):
        return ["No finished token-only run: nothing to compare against yet."]
    by_row = {e["row"]: e for e in table}
    for eval_set in EVAL_SETS:
        good = [(by_row[r]["relative_cost"], r, c[eval_set]) for r, c in comparisons.items() if eval_set in c
                and c[eval_set]["verdict_final"] in ("beats", "matches")]
        if not any(eval_set in c for c in comparisons.values()):
            continue
        if good:
            cheapest = min(good)
            names = ", ".join(f"{by_row[r]['label']} ({c['verdict_final']}, Δ {c['delta_final']:+.4f} ± "
                              f"{c['stderr']:.4f} nats at {cost:.3f}x compute)" for cost, r, c in sorted(good))
            lines.append(f"{SET_LABELS[eval_set]}: the patch runs that match or beat token-only's full-budget "
                         f"loss within {MATCH_SIGMAS:g} standard errors: {names}. The cheapest of them needs "
                         f"{cheapest[0]:.3f}x token-only's compute.")
        else:
            lines.append(f"{SET_LABELS[eval_set]}: no patch run matches token-only's full-budget loss within "
                         f"{MATCH_SIGMAS:g} standard errors (or only by sign, where no seed spread exists).")
        for r, c in comparisons.items():
            cc = c.get(eval_set)
            if not cc:
                continue
            se = f" ± {cc['stderr']:.4f}" if cc["stderr"] is not None else ""
            note = (f"; seed spread borrowed (pooled) for {' and '.join(cc['spread_borrowed_for'])}"
                    if cc["spread_borrowed_for"] else "")
            eq = ("token-only has no validation point at that compute" if cc["delta_equal_compute"] is None else
                  f"vs token-only at the same compute (an un-annealed point of its curve) "
                  f"{cc['delta_equal_compute']:+.4f}: {cc['verdict_equal_compute']}")
            lines.append(f"  - {by_row[r]['label']} at {by_row[r]['relative_cost']:.3f}x compute: "
                         f"Δ vs token-only's final {cc['delta_final']:+.4f}{se} nats ({cc['verdict_final']}){note}; "
                         f"{eq}.")
    lines += paper_comparison(table, comparisons)
    if missing:
        lines.append(f"Not included (unfinished or not run): {', '.join(missing)}.")
    return lines


def paper_comparison(table: Sequence[dict], comparisons: dict) -> list[str]:
    """Set our WikiText differences beside Table 1's (as log-perplexity differences, i.e. nats)."""
    lines = []
    base_ppl = PAPER_370M_PPL["token_only"]
    parts = []
    for row, ppl in PAPER_370M_PPL.items():
        if row == "token_only":
            continue
        ours = comparisons.get(row, {}).get("wikitext")
        paper = math.log(ppl / base_ppl)
        parts.append(f"{ROW_BY_NAME[row].label}: paper {paper:+.4f}, here "
                     + (f"{ours['delta_final']:+.4f}" if ours else "not run"))
    lines.append("Beside the paper's Table 1 (370M, 360B tokens; WikiText-103 loss difference to the "
                 "token-only baseline in nats = log of the perplexity ratio): " + "; ".join(parts) + ".")
    lam_rows = [r for r in ("k4_lambda1_2", "k4_lambda2_3", "k4_lambda4_5")
                if "wikitext" in comparisons.get(r, {})]
    if len(lam_rows) >= 2:
        order = sorted(lam_rows, key=lambda r: comparisons[r]["wikitext"]["delta_final"])
        lines.append("λ ablation (K=4), best to worst on WikiText here: "
                     + " < ".join(f"λ={ROW_BY_NAME[r].patch_fraction}" for r in order)
                     + "; the paper's order at 370M: λ=1/2 < λ=2/3 < λ=4/5.")
    k_rows = [r for r in ("k2_lambda2_3", "k4_lambda2_3", "k8_lambda2_3") if "code" in comparisons.get(r, {})]
    if len(k_rows) >= 2:
        lines.append("K ablation (λ=2/3), Δ vs token-only on code / WikiText here: "
                     + "; ".join(f"K={ROW_BY_NAME[r].patch_size}: {comparisons[r]['code']['delta_final']:+.4f} / "
                                 + (f"{comparisons[r]['wikitext']['delta_final']:+.4f}"
                                    if "wikitext" in comparisons[r] else "-") for r in k_rows)
                     + f". The paper: {PAPER_K_ABLATION}.")
    return lines


def _fmt(f: dict | None) -> str:
    if not f:
        return "-"
    return f"{f['mean']:.4f}" + (f" ± {f['std']:.4f}" if f["std"] is not None else "")


def markdown(table: Sequence[dict], comparisons: dict, lines: Sequence[str], meta: dict) -> str:
    head = ["run", "K", "λ", "relative compute", "FLOPs (analytic)", "seeds",
            "code loss", "WikiText loss", "Δ code", "Δ WikiText"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        c = comparisons.get(e["row"], {})
        deltas = [f"{c[s]['delta_final']:+.4f}" if s in c else "-" for s in EVAL_SETS]
        rows.append("| " + " | ".join([e["label"], str(e["patch_size"]), e["patch_fraction_text"],
                                       f"{e['relative_cost']:.3f}", f"{e['total_flops']:.3e}",
                                       str(len(e["seeds"])), _fmt(e["final"].get("code")),
                                       _fmt(e["final"].get("wikitext")), *deltas]) + " |")
    model = meta.get("model", {})
    intro = [
        "# Patch-level training: compute-optimal CPU study", "",
        f"Model: {model.get('params', '?'):,} parameters counted with both embedding tables "
        f"({model.get('non_embedding_params', '?'):,} without), vocabulary {model.get('vocab_size', '?')}. "
        f"{meta.get('token_budget', 0):,} tokens per run "
        f"({meta.get('tokens_per_param', float('nan')):.1f} per parameter, all counted), T = "
        f"{meta.get('sequence_length', '?')}, {meta.get('batch_size', '?')} rows per token step. "
        "Every run reads the same number of tokens; relative compute is λ/K + (1 − λ) of the token-only run "
        "(the analytic FLOPs column counts the patch stage at T positions in the network).", "",
        "Losses are token-level validation losses (nats/token) at the end of each run: the corpus's held-out "
        "code split and document-level WikiText-103. ± is the sample standard deviation over seeds; Δ is the "
        "seed-mean difference to token-only's final loss (negative = better than token-only).", ""]
    return "\n".join(intro + rows + ["", "## What the data support", ""] + [
        (ln if ln.startswith("  - ") else f"- {ln}") for ln in lines] + [
        "", "![validation loss vs compute](loss_vs_compute.png)", ""])


def plot(summaries: Sequence[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = dict(zip((r.name for r in ROWS), ("black", "tab:orange", "tab:blue", "tab:green", "tab:purple",
                                                "tab:red")))
    base_flops = next((s["total_flops"] / s["relative_flops_analytic"] for s in summaries
                       if s["relative_flops_analytic"]), 1.0)
    fig, axes = plt.subplots(1, len(EVAL_SETS), figsize=(12, 4.8))
    for ax, eval_set in zip(axes, EVAL_SETS):
        labelled = set()
        for s in summaries:
            points = s["curve"].get(eval_set, [])
            if not points:
                continue
            xs, ys = zip(*points)
            row = ROW_BY_NAME[s["row"]]
            label = None if row.name in labelled else row.label
            labelled.add(row.name)
            ax.plot([x / base_flops for x in xs], ys, "o-", color=colors[row.name], lw=1.2, ms=3, alpha=0.8,
                    label=label)
        ax.set_xscale("log")
        ax.set_xlabel("training compute (fraction of a token-only run, analytic FLOPs)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(SET_LABELS[eval_set])
        ax.grid(alpha=0.3, which="both")
        if labelled:
            ax.legend(fontsize=8)
    fig.suptitle("Patch-level vs token-only training at equal tokens (every seed drawn)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_report(out: Path, runs: Sequence[StudyRun], results_dir: Path, meta: dict) -> dict:
    """Write results.md, loss_vs_compute.png and summary.json into `results_dir`; returns the summary."""
    results_dir.mkdir(parents=True, exist_ok=True)
    summaries, missing = collect(out, runs)
    table = aggregate(summaries)
    comparisons = compare(table, summaries)
    lines = statement(table, comparisons, missing) if summaries else ["No finished runs yet."]
    if summaries:
        plot(summaries, results_dir / "loss_vs_compute.png")
    write_text_atomic(results_dir / "results.md", markdown(table, comparisons, lines, meta))
    summary = {"benchmark": "patch_study", "study": meta, "configurations": table, "comparisons": comparisons,
               "statement": lines, "missing_runs": missing,
               "runs": [{k: v for k, v in s.items() if k not in ("curve", "per_stage_eval")} for s in summaries],
               "curves": {s["run"]: s["curve"] for s in summaries}}
    write_json_atomic(results_dir / "summary.json", summary, default=float)
    return summary
