"""The main job's report: one section per part of the pipeline, built from the files each stage wrote.

Every section builder reads only files in the run directory, found through its `RunLayout`: the manifest
says which models the run made, the evals' EvalRecords hold their numbers (no models are loaded), so the
report can be rebuilt at any time; a section whose inputs are missing says what is
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
from patch_training.contract.layout import RunLayout
from patch_training.errors import one_line

def stages_section(layout: RunLayout) -> Section:
    s = Section("What ran")
    path = layout.stage_file("stage_log")
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


def models_section(layout: RunLayout) -> Section:
    """The run's manifest: which models the stages made, from what, and their fingerprints."""
    s = Section("Models this run produced")
    models = layout.models()
    if not models:
        return s.add(Missing(f"{layout.manifest_path} (no stage has registered a model yet)"))
    s.add(Paragraph("Each stage that makes a model adds it to the run's manifest; the eval stages evaluate the models "
                    "listed there, in this order. The fingerprint hashes the checkpoint's files; each eval record "
                    "also carries the fingerprint of the weights and numerics it decoded with."))
    s.add(Table(["model", "kind", "stage", "checkpoint", "source", "fingerprint"],
                [[m.name, m.kind, m.stage, m.checkpoint, m.source, m.fingerprint] for m in models]))
    return s


def default_sections(layout: RunLayout, fig_dir: Path) -> list[tuple[str, Callable[[], Section]]]:
    return [
        ("What ran", lambda: stages_section(layout)),
        ("Models", lambda: models_section(layout)),
        ("Real model", lambda: real_model.section(layout)),
        ("Pre-training", lambda: pretraining.section(layout, fig_dir)),
        ("Samples", lambda: pretraining.samples_section(layout)),
        ("Case2Code data", lambda: eval_sections.case2code_data_section(layout, fig_dir)),
        ("Fine-tuning", lambda: eval_sections.finetune_section(layout)),
        ("Case2Code eval", lambda: eval_sections.case2code_eval_section(layout)),
        ("SolverLearner", lambda: eval_sections.solverlearner_section(layout)),
        ("DynamicQA", lambda: eval_sections.dynamicqa_section(layout)),
    ]


def build(run_dir: Path) -> Report:
    run_dir = Path(run_dir)
    fig_dir = run_dir / "report_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    report = Report(
        "Patch-level pre-training, Case2Code and evals: main-job report",
        f"Run directory {run_dir}; built {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. CPU-scale: the "
        "demo's own models show that every stage of the pipeline works end to end and how it is measured; they are "
        "not the papers' results, which need a TPU pod and billions of tokens. A real pretrained model "
        "(SmolLM2-135M-Instruct) runs the same evals beside them, on small slices, so the evals are seen measuring "
        "a model that can answer.")
    for title, make in default_sections(RunLayout(run_dir), fig_dir):
        try:
            report.sections.append(make())
        except Exception as e:  # one broken section must not lose the others
            report.sections.append(Section(title, [Missing(f"this section failed to build: "
                                                           f"{type(e).__name__}: {one_line(e)}")]))
    return report


def write(run_dir: Path) -> tuple[Path, Path]:
    return write_report(build(run_dir), Path(run_dir))
