"""The main job's report: one section per part of the pipeline, built from the files each stage wrote.

Every section builder reads only files in the run directory (no models, no imports of the stages'
code), so the report can be rebuilt at any time; a section whose inputs are missing says what is
missing instead of failing, and a section that breaks on unexpected content reports the error in
one line and the rest of the report is still written.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from evals.report import eval_sections, pretraining, real_model
from evals.report.document import Missing, Paragraph, Report, Section, Table, write_report
from patch_training.errors import one_line

STAGE_LOG = "demo_stages.jsonl"   # written by scripts/demo.sh: one line per finished stage
# The models the eval stages evaluate (scripts/demo_lib/models.sh), in report order; the last is the real
# pretrained model (stage 12_pretrained), which has a section of its own as well.
EVAL_MODELS = ("patch", "baseline", "finetuned", real_model.REAL)


def stages_section(run_dir: Path) -> Section:
    s = Section("What ran")
    path = run_dir / STAGE_LOG
    if not path.is_file():
        return s.add(Missing(f"{path} (scripts/demo.sh writes it as stages finish)"))
    latest: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        latest[rec["stage"]] = rec          # a re-run's line replaces the earlier one
    rows = [[name, rec.get("status"), rec.get("wall_s"), rec.get("finished_at")] for name, rec in sorted(latest.items())]
    total = sum(r[2] or 0 for r in rows)
    s.add(Paragraph("The main job runs the stages below in order (scripts/demo_stages/); each is resumable, so a "
                    "re-run skips finished work. Wall times are those of the latest run of each stage."))
    s.add(Table(["stage", "status", "wall (s)", "finished at (UTC)"], rows, f"Total of the latest runs: {total:.0f} s."))
    return s


def default_sections(run_dir: Path, fig_dir: Path) -> list[tuple[str, Callable[[], Section]]]:
    return [
        ("What ran", lambda: stages_section(run_dir)),
        ("Real model", lambda: real_model.section(run_dir, [m for m in EVAL_MODELS if m != real_model.REAL])),
        ("Pre-training", lambda: pretraining.section(run_dir, fig_dir)),
        ("Samples", lambda: pretraining.samples_section(run_dir)),
        ("Case2Code data", lambda: eval_sections.case2code_data_section(run_dir, fig_dir)),
        ("Fine-tuning", lambda: eval_sections.finetune_section(run_dir)),
        ("Case2Code eval", lambda: eval_sections.case2code_eval_section(run_dir, list(EVAL_MODELS))),
        ("SolverLearner", lambda: eval_sections.solverlearner_section(run_dir)),
        ("DynamicQA", lambda: eval_sections.dynamicqa_section(
            run_dir, [(m, f"dynamicqa/{m}") for m in EVAL_MODELS])),
    ]


def build(run_dir: Path) -> Report:
    run_dir = Path(run_dir)
    fig_dir = run_dir / "report_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    report = Report(
        "Patch-level pre-training, Case2Code and evals: main-job report",
        f"Run directory {run_dir}; built {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. CPU-scale: the "
        "numbers show that every stage of the pipeline works end to end and how it is measured; they are not the "
        "papers' results, which need a TPU pod and billions of tokens.")
    for title, make in default_sections(run_dir, fig_dir):
        try:
            report.sections.append(make())
        except Exception as e:  # one broken section must not lose the others
            report.sections.append(Section(title, [Missing(f"this section failed to build: "
                                                           f"{type(e).__name__}: {one_line(e)}")]))
    return report


def write(run_dir: Path) -> tuple[Path, Path]:
    return write_report(build(run_dir), Path(run_dir))
