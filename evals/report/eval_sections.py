"""Report sections for the Case2Code data, fine-tuning and the three evals, read from their output files."""
from __future__ import annotations

import json
from pathlib import Path

from evals.report.document import Figure, Missing, Paragraph, Section, Table


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
    for row in sorted(p for p in out.iterdir() if p.is_dir()):
        chart = row / "chart.png"
        if chart.is_file():
            s.add(Figure(chart, f"SolverLearner, {row.name}: accuracy per variant and setting"))
    return s
