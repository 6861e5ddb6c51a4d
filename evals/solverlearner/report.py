"""Human views of SolverLearner records: results.md (a table per run) and chart.png (deductive vs inductive vs
SolverLearner per variant), plus `combine` for several runs side by side. All are drawn from EvalRecords, and
nothing reads them back."""
from __future__ import annotations

import json
from pathlib import Path

from evals.solverlearner.common import SETTINGS
from evals.solverlearner.record import cell_index
from patch_training.contract.records import EvalRecord


def _cells(record: EvalRecord) -> dict[tuple[str, str], dict[str, dict]]:
    """(task, variant) -> setting -> its row of the cells table."""
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for c in record.table("cells"):
        rows.setdefault((c["task"], c["variant"]), {})[c["setting"]] = c
    return rows


def format_cell(cell: dict | None, missing: str | None = "–") -> str | None:
    """One table cell: accuracy, object accuracy when scored, parse failures, n (`missing` when absent)."""
    if cell is None:
        return missing
    text = f"{cell['accuracy']:.3f}"
    if cell.get("object_accuracy") is not None:
        text += f" (obj {cell['object_accuracy']:.3f})"
    if cell.get("parse_failures"):
        text += f" [{cell['parse_failures']} pf]"
    return text + f" n={cell['n']}"


def markdown(records: dict[str, EvalRecord]) -> str:
    """One table; with several runs (label -> record) a `model` column tells them apart."""
    several = len(records) > 1
    settings = [s for s in SETTINGS if any(c["setting"] == s for r in records.values() for c in r.table("cells"))]
    head = (["model"] if several else []) + ["task", "variant"] + settings
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, record in records.items():
        for (task, variant), cells in sorted(_cells(record).items()):
            row = ([label] if several else []) + [task, variant] + [format_cell(cells.get(s)) for s in settings]
            lines.append("| " + " | ".join(row) + " |")
    notes = ["", "Accuracy = correct / all predictions of the cell; `[k pf]` = k parse failures (counted wrong); "
             "spatial shows room accuracy and `obj` = per-object accuracy (centroid rule)."]
    for label, record in records.items():
        skipped = {r["reason"]: r["lines"] for r in record.table("skipped_lines")}
        if skipped:
            notes.append(f"Skipped lines{f' ({label})' if several else ''}: {json.dumps(skipped)}")
    return "\n".join(lines + notes) + "\n"


def chart(record: EvalRecord, path: Path, title: str = "SolverLearner") -> None:
    """Grouped bars: per task a panel, per variant a group, per setting a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _cells(record)
    tasks = sorted({t for t, _ in rows})
    settings = [s for s in SETTINGS if any(s in c for c in rows.values())]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 2.8 * max(1, len(tasks))), squeeze=False)
    width = 0.8 / max(1, len(settings))
    for ax, task in zip(axes[:, 0], tasks):
        variants = [v for t, v in sorted(rows) if t == task]
        for j, s in enumerate(settings):
            cells = [rows[(task, v)].get(s) for v in variants]
            vals = [c["accuracy"] if c else 0.0 for c in cells]
            xs = [i + j * width for i in range(len(variants))]
            ax.bar(xs, vals, width, label=s)
            for x, c, val in zip(xs, cells, vals):  # parse failures, where there are any, above their bar
                if c and c.get("parse_failures"):
                    ax.text(x, val + 0.02, f"pf {c['parse_failures']}", ha="center", fontsize=6)
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


def write_views(record: EvalRecord, out: Path, title: str = "SolverLearner") -> None:
    """results.md and chart.png beside the record."""
    out.mkdir(parents=True, exist_ok=True)
    head = (f"model fingerprint `{record.model_fingerprint}`, data hash `{record.data_hash}`, "
            f"commit `{record.git_commit}`\n\n")
    (out / "results.md").write_text(f"# {title}\n\n" + head + markdown({title: record}))
    if cell_index(record):
        chart(record, out / "chart.png", title)
