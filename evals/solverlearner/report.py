"""The report: results.json (the summary), results.md (a table per task) and chart.png (deductive vs
inductive vs SolverLearner per variant), plus `combine` for several runs side by side (the demo's table)."""
from __future__ import annotations

import json
from pathlib import Path

from evals.solverlearner.common import SETTINGS


def _cells(summary: dict) -> dict[tuple[str, str], dict[str, str]]:
    """(task, variant) -> setting -> 'cell key'."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for key in summary["accuracy"]:
        task, variant, setting = key.split("/")
        rows.setdefault((task, variant), {})[setting] = key
    return rows


def _fmt(summary: dict, key: str | None) -> str:
    if key is None:
        return "–"
    text = f"{summary['accuracy'][key]:.3f}"
    if key in summary.get("object_accuracy", {}):
        text += f" (obj {summary['object_accuracy'][key]:.3f})"
    if summary["parse_failures"].get(key):
        text += f" [{summary['parse_failures'][key]} pf]"
    return text + f" n={summary['n'][key]}"


def markdown(summaries: dict[str, dict]) -> str:
    """One table; with several runs (label -> summary) a `model` column tells them apart."""
    several = len(summaries) > 1
    settings = [s for s in SETTINGS if any(k.endswith("/" + s) for sm in summaries.values() for k in sm["accuracy"])]
    head = (["model"] if several else []) + ["task", "variant"] + settings
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, sm in summaries.items():
        for (task, variant), cells in sorted(_cells(sm).items()):
            row = ([label] if several else []) + [task, variant] + [_fmt(sm, cells.get(s)) for s in settings]
            lines.append("| " + " | ".join(row) + " |")
    notes = ["", "Accuracy = correct / all predictions of the cell; `[k pf]` = k parse failures (counted wrong); "
             "spatial shows room accuracy and `obj` = per-object accuracy (centroid rule)."]
    for label, sm in summaries.items():
        if sm.get("bad_lines"):
            notes.append(f"Skipped lines{f' ({label})' if several else ''}: {json.dumps(sm['bad_lines'])}")
    return "\n".join(lines + notes) + "\n"


def chart(summary: dict, path: Path, title: str = "SolverLearner") -> None:
    """Grouped bars: per task a panel, per variant a group, per setting a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _cells(summary)
    tasks = sorted({t for t, _ in rows})
    settings = [s for s in SETTINGS if any(s in c for c in rows.values())]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 2.8 * max(1, len(tasks))), squeeze=False)
    width = 0.8 / max(1, len(settings))
    for ax, task in zip(axes[:, 0], tasks):
        variants = [v for t, v in sorted(rows) if t == task]
        for j, s in enumerate(settings):
            keys = [rows[(task, v)].get(s, "") for v in variants]
            vals = [summary["accuracy"].get(k, 0.0) for k in keys]
            xs = [i + j * width for i in range(len(variants))]
            ax.bar(xs, vals, width, label=s)
            for x, k, val in zip(xs, keys, vals):  # parse failures, where there are any, above their bar
                if summary["parse_failures"].get(k):
                    ax.text(x, val + 0.02, f"pf {summary['parse_failures'][k]}", ha="center", fontsize=6)
        ax.set_xticks([i + width * (len(settings) - 1) / 2 for i in range(len(variants))], variants)
        ax.set_ylim(0, 1.3)  # headroom for the legend
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel("accuracy")
        ax.set_title(task)
    axes[0, 0].legend(fontsize=8, ncol=len(settings), loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(summary: dict, out: Path, title: str = "SolverLearner") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    prov = summary.get("provenance")
    head = "" if not prov else (f"model fingerprint `{prov.get('model_fingerprint')}`, data hash `{prov.get('data_hash')}`, "
                                f"commit `{prov.get('git_commit')}`\n\n")
    (out / "results.md").write_text(f"# {title}\n\n" + head + markdown({title: summary}))
    if summary["accuracy"]:
        chart(summary, out / "chart.png", title)
