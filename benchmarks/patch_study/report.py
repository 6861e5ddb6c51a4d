"""The study's report, built only from the run dirs: results.md, loss_vs_compute.png, summary.json.

Every number and every sentence of the statement comes from the runs' `cost.json`, `eval.json` and
`metrics.jsonl` (via `patch_training.run_summary`), so `--report_only` can rebuild it at any time,
also from a partial study (missing runs are named).

Statistics, fixed before any number (issue 25):
- The primary measure is the final validation loss on the corpus's held-out code split (in domain:
  the model trains on code). WikiText-103 is reported as out of domain.
- A comparison is a difference of final losses, patch row minus token-only row (negative = the patch run
  is better), with a 95% interval over seeds. Runs with the same seed share their initialisation and
  their data order, so the seeds pair: the interval is the paired t interval of the per-seed differences.
- Verdicts: "equivalent" only when the whole interval lies inside ±EQUIVALENCE_MARGIN nats; "beats" or
  "trails" when the interval excludes 0; otherwise "inconclusive". One seed gives no interval and no
  verdict.
- Comparisons: each row against its size's token-only run at the full budget (the paper's Table 1
  comparison: patch at its lower cost); K=4 λ=2/3 against token-only trained on 1/2 of the tokens, and K=2
  λ=2/3 against token-only on 2/3 (equal compute, each baseline with its own full schedule); the gap of
  K=4 λ=2/3 at the main size against the small size (Welch interval of the difference of the two gaps).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Sequence

from benchmarks.patch_study.plan import EQUAL_COMPUTE_PARTNER, MAIN, ROW_BY_NAME, ROWS, StudyRun, baseline_of
from patch_training import run_summary
from patch_training.atomic import write_json_atomic, write_text_atomic

EVAL_SETS = ("code", "wikitext")
PRIMARY_SET = "code"
SET_LABELS = {"code": "held-out code (in domain)", "wikitext": "WikiText-103 (out of domain)"}
# Declared before the numbers: a difference counts as "equivalent" only when its whole 95% interval lies
# inside ±0.02 nats (about 2% in perplexity), the size of the differences Table 1 reports at 370M.
EQUIVALENCE_MARGIN = 0.02
CONFIDENCE = 0.95
# REFERENCE §1, Table 1 (370M, WikiText-103 perplexity): the paper's numbers to set ours beside.
PAPER_370M_PPL = {"token_only": 10.9, "k4_lambda1_2": 10.6, "k4_lambda2_3": 10.7, "k4_lambda4_5": 11.0}
PAPER_K_ABLATION = "K = 2 and K = 4 train alike; K = 8 and 16 are somewhat worse"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with one value)."""
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def t_quantile(df: float) -> float:
    from scipy import stats
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


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


def aggregate(summaries: Sequence[dict]) -> list[dict]:
    """One entry per configuration: seeds, relative compute, final losses (mean, std, per seed) per set."""
    table = []
    for row in ROWS:
        mine = sorted((s for s in summaries if s["row"] == row.name), key=lambda s: s["seed"])
        if not mine:
            continue
        entry = {"row": row.name, "label": row.label, "size": row.size.name,
                 "patch_size": row.patch_size if row.patch_fraction else 1,
                 "patch_fraction": float(row.patch_fraction), "patch_fraction_text": str(row.patch_fraction),
                 "budget_fraction": float(row.budget_fraction), "relative_cost": row.relative_cost,
                 "total_flops": statistics.fmean(s["total_flops"] for s in mine),
                 "tokens": mine[0]["tokens"], "seeds": [s["seed"] for s in mine],
                 "wall_s": statistics.fmean(s["wall_s"] for s in mine), "final": {}}
        for eval_set in EVAL_SETS:
            by_seed = {s["seed"]: s["final"][eval_set]["loss"] for s in mine if eval_set in s["final"]}
            if by_seed:
                m, sd = mean_std(list(by_seed.values()))
                entry["final"][eval_set] = {"mean": m, "std": sd, "n": len(by_seed), "by_seed": by_seed}
        table.append(entry)
    return table


def paired_difference(a: dict, b: dict) -> dict | None:
    """a − b over the seeds both have: mean, paired 95% t interval (None with one seed)."""
    seeds = sorted(set(a["by_seed"]) & set(b["by_seed"]))
    if not seeds:
        return None
    diffs = [a["by_seed"][s] - b["by_seed"][s] for s in seeds]
    mean = statistics.fmean(diffs)
    out = {"delta": mean, "n": len(seeds), "seeds": seeds, "per_seed": diffs, "interval": None}
    if len(diffs) > 1:
        half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        out["interval"] = [mean - half, mean + half]
    out["verdict"] = verdict(out["interval"])
    return out


def difference_of_gaps(a: dict, b: dict) -> dict | None:
    """(gap a) − (gap b) for two paired differences from different sizes: Welch 95% interval."""
    if not a or not b:
        return None
    delta = a["delta"] - b["delta"]
    out = {"delta": delta, "interval": None}
    if a["n"] > 1 and b["n"] > 1:
        va = statistics.variance(a["per_seed"]) / a["n"]
        vb = statistics.variance(b["per_seed"]) / b["n"]
        se = math.sqrt(va + vb)
        if se > 0:
            df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
            half = t_quantile(df) * se
        else:
            half = 0.0
        out["interval"] = [delta - half, delta + half]
    return out


def verdict(interval: Sequence[float] | None, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Lower loss is better. Equivalence needs the whole interval inside ±margin."""
    if interval is None:
        return "one seed: no interval"
    lo, hi = interval
    if -margin <= lo and hi <= margin:
        side = "; lower" if hi < 0 else "; higher" if lo > 0 else ""
        return f"equivalent within ±{margin:g}{side}"
    if hi < 0:
        return "beats"
    if lo > 0:
        return "trails"
    return "inconclusive"


def compare(table: Sequence[dict]) -> dict:
    """Every comparison the report makes, per eval set: {"vs_full": {row: {...}}, "equal_compute": {row:
    {...}}, "scale": {...}}."""
    by_row = {e["row"]: e for e in table}
    out: dict = {"vs_full": {}, "equal_compute": {}, "scale": {}}
    for e in table:
        base = by_row.get(baseline_of(ROW_BY_NAME[e["row"]]).name)
        if base is None or base is e:
            continue
        out["vs_full"][e["row"]] = {s: d for s in EVAL_SETS if s in e["final"] and s in base["final"]
                                    and (d := paired_difference(e["final"][s], base["final"][s]))}
    for row, partner in EQUAL_COMPUTE_PARTNER.items():
        if row in by_row and partner in by_row:
            out["equal_compute"][row] = {
                s: d for s in EVAL_SETS if s in by_row[row]["final"] and s in by_row[partner]["final"]
                and (d := paired_difference(by_row[row]["final"][s], by_row[partner]["final"][s]))}
            out["equal_compute"][row]["partner"] = partner
    main_gap = out["vs_full"].get("k4_lambda2_3", {})
    small_gap = out["vs_full"].get("small_k4_lambda2_3", {})
    for s in EVAL_SETS:
        d = difference_of_gaps(main_gap.get(s), small_gap.get(s))
        if d:
            out["scale"][s] = d
    return out


def _diff_text(d: dict) -> str:
    if d["interval"] is None:
        return f"{d['delta']:+.4f} (one seed)"
    lo, hi = d["interval"]
    return f"{d['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def statement(table: Sequence[dict], comparisons: dict, missing: Sequence[str]) -> list[str]:
    """Plain sentences generated from the numbers."""
    by_row = {e["row"]: e for e in table}
    if "token_only" not in by_row:
        return ["No finished token-only run: nothing to compare against yet."]
    lines = [f"Declared before the numbers: 95% paired t intervals over seeds; \"equivalent\" only when the "
             f"whole interval lies inside ±{EQUIVALENCE_MARGIN:g} nats. Primary measure: "
             f"{SET_LABELS[PRIMARY_SET]}."]
    for eval_set in EVAL_SETS:
        vs_full = {r: c[eval_set] for r, c in comparisons["vs_full"].items() if eval_set in c}
        if not vs_full:
            continue
        lines.append(f"{SET_LABELS[eval_set]}, each row against token-only at the full budget of its size "
                     "(Δ loss, nats; negative = better than token-only):")
        for r, d in vs_full.items():
            e = by_row[r]
            lines.append(f"  - {e['label']} at {e['relative_cost']:.3f}x compute: Δ {_diff_text(d)} over "
                         f"{d['n']} seed(s): {d['verdict']}.")
        for r, c in comparisons["equal_compute"].items():
            if eval_set in c:
                d = c[eval_set]
                lines.append(f"  - equal compute: {by_row[r]['label']} vs {by_row[c['partner']]['label']} "
                             f"(both {by_row[r]['relative_cost']:.3f}x): Δ {_diff_text(d)}: {d['verdict']}.")
        gap = comparisons["scale"].get(eval_set)
        if gap:
            main = comparisons["vs_full"]["k4_lambda2_3"][eval_set]["delta"]
            small = comparisons["vs_full"]["small_k4_lambda2_3"][eval_set]["delta"]
            if gap["interval"] is None:
                trend = "no interval (one seed)"
            elif gap["interval"][1] < 0:
                trend = "the gap is smaller (more favourable to patches) at the larger size"
            elif gap["interval"][0] > 0:
                trend = "the gap is larger (less favourable to patches) at the larger size"
            else:
                trend = "the interval does not tell which way the gap moves with size"
            lines.append(f"  - with size: K=4, λ=2/3 minus token-only is {main:+.4f} at the main size and "
                         f"{small:+.4f} at the small size; difference {_diff_text(gap)} (Welch): {trend}.")
    lines += paper_comparison(table, comparisons)
    if missing:
        lines.append(f"Not included (unfinished or not run): {', '.join(missing)}.")
    return lines


def paper_comparison(table: Sequence[dict], comparisons: dict) -> list[str]:
    """Set our WikiText differences beside Table 1's (as log-perplexity differences, i.e. nats)."""
    lines = []
    base_ppl = PAPER_370M_PPL["token_only"]
    parts = []
    vs_full = comparisons["vs_full"]
    for row, ppl in PAPER_370M_PPL.items():
        if row == "token_only":
            continue
        ours = vs_full.get(row, {}).get("wikitext")
        paper = math.log(ppl / base_ppl)
        parts.append(f"{ROW_BY_NAME[row].label}: paper {paper:+.4f}, here "
                     + (_diff_text(ours) if ours else "not run"))
    lines.append("Beside the paper's Table 1 (370M, 360B tokens; WikiText-103 loss difference to the "
                 "token-only baseline in nats = log of the perplexity ratio): " + "; ".join(parts) + ".")
    lam_rows = [r for r in ("k4_lambda1_2", "k4_lambda2_3", "k4_lambda4_5") if PRIMARY_SET in vs_full.get(r, {})]
    if len(lam_rows) >= 2:
        order = sorted(lam_rows, key=lambda r: vs_full[r][PRIMARY_SET]["delta"])
        lines.append("λ ablation (K=4), best to worst on held-out code here (seed means): "
                     + " < ".join(f"λ={ROW_BY_NAME[r].patch_fraction}" for r in order)
                     + "; the paper's order at 370M (WikiText): λ=1/2 < λ=2/3 < λ=4/5.")
    k_rows = [r for r in ("k2_lambda2_3", "k4_lambda2_3", "k8_lambda2_3") if PRIMARY_SET in vs_full.get(r, {})]
    if len(k_rows) >= 2:
        lines.append("K ablation (λ=2/3), Δ vs token-only on held-out code here: "
                     + "; ".join(f"K={ROW_BY_NAME[r].patch_size}: {_diff_text(vs_full[r][PRIMARY_SET])}"
                                 for r in k_rows) + f". The paper: {PAPER_K_ABLATION}.")
    return lines


def _fmt(f: dict | None) -> str:
    if not f:
        return "-"
    return f"{f['mean']:.4f}" + (f" ± {f['std']:.4f}" if f["std"] is not None else "")


def _cell(d: dict | None) -> str:
    return _diff_text(d) if d else "-"


def markdown(table: Sequence[dict], comparisons: dict, lines: Sequence[str], meta: dict) -> str:
    head = ["run", "size", "K", "λ", "tokens", "relative compute", "FLOPs (analytic)", "seeds",
            "code loss", "WikiText loss", "Δ code vs token-only 1x [95%]", "Δ WikiText vs token-only 1x [95%]"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        c = comparisons["vs_full"].get(e["row"], {})
        rows.append("| " + " | ".join([e["label"], e["size"], str(e["patch_size"]), e["patch_fraction_text"],
                                       f"{e['tokens']:,}", f"{e['relative_cost']:.3f}", f"{e['total_flops']:.3e}",
                                       str(len(e["seeds"])), _fmt(e["final"].get("code")),
                                       _fmt(e["final"].get("wikitext")), _cell(c.get("code")),
                                       _cell(c.get("wikitext"))]) + " |")
    sizes = meta.get("sizes", {})
    size_text = "; ".join(f"{name}: {f['params']:,} parameters ({f['non_embedding_params']:,} without the "
                          f"embedding tables), {f['token_steps']} token steps, {f['tokens_per_param']:.1f} "
                          "tokens per parameter" for name, f in sizes.items())
    intro = [
        "# Patch-level training: compute-optimal CPU study", "",
        f"Sizes: {size_text or '?'}. T = {meta.get('sequence_length', '?')}, {meta.get('batch_size', '?')} x "
        f"{meta.get('sequence_length', '?')} tokens in every step of both stages (the patch stage takes "
        f"{meta.get('batch_size', '?')}/K rows of K·T tokens, as the official scripts do), so the patch stage "
        "takes λ of the updates. Relative compute is budget × (λ/K + (1 − λ)) of the same size's token-only run "
        "at the full budget; the analytic FLOPs column counts the patch stage at T positions in the network.", "",
        f"Declared before the numbers: the primary measure is the final loss on the corpus's held-out code split "
        f"(in domain); WikiText-103 (document level) is out of domain. Every Δ is a patch (or shorter) run minus "
        f"token-only, per seed (same seed = same initialisation and data order), with its paired 95% t interval "
        f"over seeds; \"equivalent\" is written only when the whole interval lies inside "
        f"±{EQUIVALENCE_MARGIN:g} nats. Loss columns: seed mean ± sample standard deviation (nats/token).", ""]
    return "\n".join(intro + rows + ["", "## What the data support", ""] + [
        (ln if ln.startswith("  - ") else f"- {ln}") for ln in lines] + [
        "", "![validation loss vs compute](loss_vs_compute.png)", ""])


def plot(summaries: Sequence[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("tab10")
    colors = {r.name: cmap(i % 10) for i, r in enumerate(ROWS)}
    fig, axes = plt.subplots(1, len(EVAL_SETS), figsize=(13, 5))
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
            ax.plot(xs, ys, "o-" if row.size is MAIN else "s--", color=colors[row.name], lw=1.1, ms=2.5,
                    alpha=0.8, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("training compute (analytic FLOPs)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(SET_LABELS[eval_set])
        ax.grid(alpha=0.3, which="both")
        if labelled:
            ax.legend(fontsize=7)
    fig.suptitle("Patch-level vs token-only training (every seed drawn; dashed: the small size)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_report(out: Path, runs: Sequence[StudyRun], results_dir: Path, meta: dict) -> dict:
    """Write results.md, loss_vs_compute.png and summary.json into `results_dir`; returns the summary."""
    results_dir.mkdir(parents=True, exist_ok=True)
    summaries, missing = collect(out, runs)
    table = aggregate(summaries)
    comparisons = compare(table)
    lines = statement(table, comparisons, missing) if summaries else ["No finished runs yet."]
    if summaries:
        plot(summaries, results_dir / "loss_vs_compute.png")
    write_text_atomic(results_dir / "results.md", markdown(table, comparisons, lines, meta))
    summary = {"benchmark": "patch_study", "study": meta, "equivalence_margin_nats": EQUIVALENCE_MARGIN,
               "primary_measure": PRIMARY_SET, "configurations": table, "comparisons": comparisons,
               "statement": lines, "missing_runs": missing,
               "runs": [{k: v for k, v in s.items() if k not in ("curve", "per_stage_eval")} for s in summaries],
               "curves": {s["run"]: s["curve"] for s in summaries}}
    write_json_atomic(results_dir / "summary.json", summary, default=float)
    return summary
