#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# DynamicQA knowledge conflict on every model in the run's manifest (scripts/demo_lib/models.sh gives each
# model its own flags; each writes its EvalRecord into the run layout's eval dir): the first few rows of
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
  out="$(run_layout eval "$run_dir" dynamicqa "$model")"
  flags=(--limit "$limit" --judge rouge --label "$model")
  read -r -a own <<<"$(demo_model_flags "$model" dynamicqa)"
  flags+=("${own[@]}")
  # Finished means a record made with these very flags.
  if [ -f "$out/record.json" ] && [ "$(cat "$out/.done_flags" 2>/dev/null)" = "${flags[*]}" ]; then
    echo "== dynamicqa ($model): already done ($out/record.json)" >&2
    continue
  fi
  echo "== dynamicqa ($model): 10 samples per prompt, ${flags[*]} -> $out" >&2
  "$PY" -m evals.dynamicqa run --checkpoint "$ckpt" --out "$out" "${flags[@]}" </dev/null
  echo "${flags[*]}" > "$out/.done_flags"
done
