"""results.md and results.png for a Case2Code run (from results.json alone, so a re-score redraws them)."""
from __future__ import annotations

from pathlib import Path

from evals.case2code.protocol import OFFICIAL_MEAN_HIDDEN, OFFICIAL_MIN_HIDDEN


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def write_markdown(results: dict, path: Path) -> None:
    s = results["summary"]
    gold = s.get("gold", {})
    lines = [f"# Case2Code eval: {results['config'].get('model', '?')}", "",
             f"data `{results['config']['data']}` ({s['n_rows']} rows), {s['samples_per_row']['max']} sample(s) per row, "
             f"max_new_tokens {results['config']['max_new_tokens']}, temperature {results['config']['temperature']}; "
             f"model fingerprint `{results.get('model_fingerprint')}`, commit `{results.get('git_commit')}`", "",
             "| metric | value |", "|---|---|",
             f"| pass@1 | {_pct(s['pass_at_1'])} |",
             f"| gold ceiling (reference functions, same judge) | {_pct(s.get('gold_ceiling'))} "
             f"({gold.get('passed', '?')}/{gold.get('rows', '?')}) |",
             f"| pass@1 on gold-solvable rows | {_pct(s.get('pass_at_1_on_gold_solvable'))} |"]
    counts = s.get("inputs_per_row", {})
    if counts.get("hidden"):
        shown, hidden = counts["shown"], counts["hidden"]
        lines.append(f"| inputs per row, shown / hidden (mean; hidden min-max) | {shown['mean']:.1f} / "
                     f"{hidden['mean']:.1f} ({hidden['min']}-{hidden['max']}) |")
    for k, v in s.get("pass_at_k_unbiased", {}).items():
        if k != "1":
            lines.append(f"| pass@{k} (unbiased estimator) | {_pct(v)} |")
    for k, v in s.get("first_k_pass_official", {}).items():
        if k != "1":
            lines.append(f"| one of the first {k} passes (official harness figure) | {_pct(v)} |")
    if counts.get("hidden") and counts["hidden"]["mean"] < OFFICIAL_MIN_HIDDEN:
        lines += ["", f"Note: these rows hide {counts['hidden']['mean']:.1f} inputs on average, the official test "
                      f"rows {OFFICIAL_MEAN_HIDDEN}, so this is an easier test than the official one and its pass@1 reads higher."]
    lines += ["", "## Answers by status", "", "| status | answers |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["counts_by_status"].items()]
    lines += ["", "## Pass rate by number of shown examples", "", "| shown | rows | pass@1 | gold |", "|---|---|---|---|"]
    for k, v in s["pass_at_1_by_shown_examples"].items():
        lines.append(f"| {k} | {v['rows']} | {_pct(v['pass_at_1'])} | {_pct(v.get('gold'))} |")
    if gold.get("misses"):
        lines += ["", f"## Gold misses ({len(gold['misses'])}), by category", ""]
        lines += [f"- {c}: {n} row(s), {gold['reasons'].get(c, '')}" for c, n in gold["misses_by_class"].items()]
        lines += ["", "| row | function | bad/all inputs | classes |", "|---|---|---|---|"]
        lines += [f"| {m['id'][:12]} | {m['func']} | {m['bad_inputs']}/{m['n_inputs']} | "
                  f"{', '.join(m['classes'])} |" for m in gold["misses"]]
    path.write_text("\n".join(lines) + "\n")


def write_plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    shown = s["pass_at_1_by_shown_examples"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    xs = list(shown)
    pos = range(len(xs))
    a.bar([p - 0.2 for p in pos], [shown[x]["pass_at_1"] for x in xs], width=0.4, label="model pass@1")
    a.bar([p + 0.2 for p in pos], [shown[x].get("gold", 0) for x in xs], width=0.4, label="gold ceiling", alpha=0.6)
    a.set_xticks(list(pos), xs)
    a.set_xlabel("examples shown in the prompt")
    a.set_ylabel("pass rate")
    a.set_ylim(0, 1.05)
    a.legend()
    a.set_title("pass rate by shown examples")
    st = s["counts_by_status"]
    b.barh(list(st), list(st.values()))
    b.set_xlabel("answers")
    b.set_title("answers by status")
    fig.suptitle(f"Case2Code: pass@1 {100 * s['pass_at_1']:.1f}% (gold ceiling "
                 f"{100 * s.get('gold_ceiling', 0):.1f}%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
