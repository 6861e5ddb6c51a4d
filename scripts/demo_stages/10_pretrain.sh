#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
echo "== two-stage patch-level training: small model, code corpus, $(nproc) CPU cores -> $run_dir" >&2
"$PY" -m patch_training.two_stage \
  --gin_file=configs/experiments/patch/demo_small_cpu.gin \
  --gin.MODEL_DIR="'$run_dir'" "$@"

