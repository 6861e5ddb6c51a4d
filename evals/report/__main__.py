"""Build the main job's report from a run directory.

    python -m evals.report --run_dir runs/demo      # writes runs/demo/report.md and runs/demo/report.html
"""
from __future__ import annotations

import argparse
from pathlib import Path

from patch_training.errors import UserError, run_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="the main job's run directory")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    from evals.report.demo_report import build
    from evals.report.document import write_report
    report = build(run_dir)
    md, html = write_report(report, run_dir)
    missing = sum(1 for s in report.sections for b in s.blocks if type(b).__name__ == "Missing")
    print(f"wrote {md} and {html} ({len(report.sections)} sections, {len(report.figures())} figures, "
          f"{missing} part(s) not available)")
    return 0


if __name__ == "__main__":
    run_cli(main)
