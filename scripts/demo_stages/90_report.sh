#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# The report: RUN_DIR/report.md and RUN_DIR/report.html (self-contained) from what the stages wrote.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
echo "== report" >&2
"$PY" -m evals.report --run_dir "$run_dir"
