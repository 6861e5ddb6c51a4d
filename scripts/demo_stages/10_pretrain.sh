#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# Two-stage patch-level training at the run root; its final token-level checkpoint joins the run's manifest as
# `patch`, the model the later stages sample, fine-tune and evaluate.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
root="$(run_layout stage "$run_dir" pretrain)"
echo "== two-stage patch-level training: small model, code corpus, $(nproc) CPU cores -> $root" >&2
"$PY" -m patch_training.two_stage \
  --gin_file=configs/experiments/patch/demo_small_cpu.gin \
  --gin.MODEL_DIR="'$root'" "$@"
run_layout add "$run_dir" --name patch --checkpoint "$root/stage2_token" --stage 10_pretrain
