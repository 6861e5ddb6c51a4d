"""results.md and results.png for a Case2Code run, drawn from its EvalRecord alone (human views; the report
reads the record, never these)."""
from __future__ import annotations

from pathlib import Path

from evals.case2code.protocol import OFFICIAL_MEAN_HIDDEN, OFFICIAL_MIN_HIDDEN
from patch_training.contract.records import EvalRecord


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def write_markdown(record: EvalRecord, path: Path) -> None:
    s, cfg = record.summary, record.config
    lines = [f"# Case2Code eval: {record.model_name or cfg.get('model', '?')}", "",
             f"data `{record.data_path}` ({s['n_rows']} rows), {s['samples_per_row_max']} sample(s) per row, "
             f"max_new_tokens {cfg['max_new_tokens']}, temperature {cfg['temperature']}; "
             f"model fingerprint `{record.model_fingerprint}`, data hash `{record.data_hash}`, "
             f"commit `{record.git_commit}`", "",
             "| metric | value |", "|---|---|",
             f"| pass@1 | {_pct(s['pass_at_1'])} |",
             f"| gold ceiling (reference functions, same judge) | {_pct(s.get('gold_ceiling'))} "
             f"({s.get('gold_passed', '?')}/{s.get('gold_rows', '?')}) |",
             f"| pass@1 on gold-solvable rows | {_pct(s.get('pass_at_1_on_gold_solvable'))} |"]
    hidden = s.get("hidden_inputs_mean")
    if hidden is not None:
        lines.append(f"| inputs per row, shown / hidden (mean; hidden min-max) | {s['shown_inputs_mean']:.1f} / "
                     f"{hidden:.1f} ({s['hidden_inputs_min']}-{s['hidden_inputs_max']}) |")
    for key, value in s.items():
        if key.startswith("pass_at_") and key.endswith("_unbiased") and key != "pass_at_1_unbiased":
            lines.append(f"| pass@{key.split('_')[2]} (unbiased estimator) | {_pct(value)} |")
        elif key.startswith("first_") and key.endswith("_pass_official") and key != "first_1_pass_official":
            lines.append(f"| one of the first {key.split('_')[1]} passes (official harness figure) | {_pct(value)} |")
    if hidden is not None and hidden < OFFICIAL_MIN_HIDDEN:
        lines += ["", f"Note: these rows hide {hidden:.1f} inputs on average, the official test "
                      f"rows {OFFICIAL_MEAN_HIDDEN}, so this is an easier test than the official one and its pass@1 reads higher."]
    lines += ["", "## Answers by status", "", "| status | answers |", "|---|---|"]
    lines += [f"| {r['status']} | {r['answers']} |" for r in record.table("statuses")]
    lines += ["", "## Pass rate by number of shown examples", "", "| shown | rows | pass@1 | gold |", "|---|---|---|---|"]
    for r in record.table("by_shown_examples"):
        lines.append(f"| {r['shown']} | {r['rows']} | {_pct(r['pass_at_1'])} | {_pct(r.get('gold'))} |")
    misses = record.table("gold_misses")
    if misses:
        lines += ["", f"## Gold misses ({len(misses)}), by category", ""]
        lines += [f"- {r['class']}: {r['rows']} row(s), {r['reason']}" for r in record.table("gold_miss_classes")]
        lines += ["", "| row | function | bad/all inputs | classes |", "|---|---|---|---|"]
        lines += [f"| {m['id'][:12]} | {m['func']} | {m['bad_inputs']}/{m['n_inputs']} | {m['classes']} |"
                  for m in misses]
    path.write_text("\n".join(lines) + "\n")


def write_plot(record: EvalRecord, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = record.summary
    shown = record.table("by_shown_examples")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    pos = range(len(shown))
    a.bar([p - 0.2 for p in pos], [r["pass_at_1"] for r in shown], width=0.4, label="model pass@1")
    a.bar([p + 0.2 for p in pos], [r.get("gold") or 0 for r in shown], width=0.4, label="gold ceiling", alpha=0.6)
    a.set_xticks(list(pos), [str(r["shown"]) for r in shown])
    a.set_xlabel("examples shown in the prompt")
    a.set_ylabel("pass rate")
    a.set_ylim(0, 1.05)
    a.legend()
    a.set_title("pass rate by shown examples")
    st = record.table("statuses")
    b.barh([r["status"] for r in st], [r["answers"] for r in st])
    b.set_xlabel("answers")
    b.set_title("answers by status")
    fig.suptitle(f"Case2Code: pass@1 {100 * s['pass_at_1']:.1f}% (gold ceiling "
                 f"{100 * (s.get('gold_ceiling') or 0):.1f}%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
