#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# DynamicQA knowledge conflict on the demo's own models and the real one (scripts/demo_lib/models.sh, with each
# model's own flags): the first few rows of
# each fact type (static, temporal, disputable), 10 samples per prompt at T=0.5 with full-vocabulary
# distributions, answers grouped with the `rouge` judge (ROUGE-L F1 > 0.3; no NLI weights needed), then
# semantic entropy, coherent persuasion and persuaded / stubborn per fact type. Resumable: sampled items are
# skipped on a rerun (and the generation cache keeps finished samples), a finished model is not redone.
set -euo pipefail
run_dir="$1"
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
limit="${DYNAMICQA_LIMIT:-2}"
mapfile -t models < <(demo_models "$run_dir")
for entry in "${models[@]}"; do
  read -r model ckpt <<<"$entry"
  out="$run_dir/dynamicqa/$model"
  flags=(--limit "$limit" --judge rouge)
  read -r -a own <<<"$(demo_model_flags "$model" dynamicqa)"
  flags+=("${own[@]}")
  # Finished means a summary made with these very flags.
  if [ -f "$out/summary.json" ] && [ "$(cat "$out/.done_flags" 2>/dev/null)" = "${flags[*]}" ]; then
    echo "== dynamicqa ($model): already done ($out/summary.json)" >&2
    continue
  fi
  echo "== dynamicqa ($model): 10 samples per prompt, ${flags[*]} -> $out" >&2
  "$PY" -m evals.dynamicqa run --checkpoint "$ckpt" --out "$out" "${flags[@]}" </dev/null
  echo "${flags[*]}" > "$out/.done_flags"
done
