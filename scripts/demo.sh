#!/usr/bin/env bash
# Main job: the most complete pipeline that exists, end to end on CPU.
# Each stage is a script in scripts/demo_stages/, run in name order as `bash STAGE RUN_DIR [ARGS...]`
# from the repository root; a stage must be resumable (a re-run skips or resumes finished work) and
# say what it does on stderr. Current stages:
#   10_pretrain  two-stage patch-level training of `small` (K=4 on 2/3 of the budget, then tokens),
#                per-stage validation perplexity on code and WikiText-103, cost relative to token-only
#   20_samples   sampled completions from the final model (python -m evals.generate)
#   90_report    the summary
# Extra arguments go to the pre-training stage (gin flags).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${1:-runs/demo}"
export PY="${PY:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$run_dir"
for stage in scripts/demo_stages/*.sh; do
  name="$(basename "$stage" .sh)"
  start=$(date +%s)
  echo "==== demo stage $name ($(date +%H:%M:%S))" >&2
  if [ "$name" = 10_pretrain ]; then bash "$stage" "$run_dir" "${@:2}"; else bash "$stage" "$run_dir"; fi
  echo "==== demo stage $name done in $(( $(date +%s) - start )) s" >&2
done
