#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# The token-only baseline at the same token budget as the patch run (resumes like any two-stage run).
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
echo "== token-only baseline (lambda = 0): small model, same token budget -> $run_dir/baseline" >&2
"$PY" -m patch_training.two_stage \
  --gin_file=configs/experiments/patch/demo_small_cpu_baseline.gin \
  --gin.MODEL_DIR="'$run_dir/baseline'" "$@"
