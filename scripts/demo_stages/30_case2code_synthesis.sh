#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# Case2Code data synthesis from the default source (the stdlib + installed site-packages) with typed inputs:
# harvest -> inputs -> sandbox twice -> keep rule -> final re-run -> dedup -> splits; prints the funnel.
# Bounded by --max_functions to stay within a few minutes on 2 cores. Resumable: a finished synthesis is
# skipped (its funnel is printed again), an interrupted one resumes from the journals in case2code_data/work.
set -euo pipefail
run_dir="$1"
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
MAX_FUNCTIONS="${C2C_DEMO_MAX_FUNCTIONS:-800}"
out="$(run_layout stage "$run_dir" case2code_data)"
echo "== Case2Code synthesis (typed inputs, at most $MAX_FUNCTIONS harvested functions) -> $out" >&2
"$PY" -m case2code_finetune.synthesize --out "$out" --inputs typed \
  --max_functions "$MAX_FUNCTIONS" --min_test 50
