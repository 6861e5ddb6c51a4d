#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# The token-only baseline at the same token budget as the patch run (resumes like any two-stage run); its final
# checkpoint joins the run's manifest as `baseline`.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
out="$(run_layout stage "$run_dir" baseline)"
echo "== token-only baseline (lambda = 0): small model, same token budget -> $out" >&2
"$PY" -m patch_training.two_stage \
  --gin_file=configs/experiments/patch/demo_small_cpu_baseline.gin \
  --gin.MODEL_DIR="'$out'" "$@"
run_layout add "$run_dir" --name baseline --checkpoint "$out/stage2_token" --stage 15_baseline
