#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# SolverLearner on the demo's models and the real one (scripts/demo_lib/models.sh, with each model's own flags;
# a few problems per cell), next to the oracle (must be 1.0) and the
# rule-blind backend (the everyday rule: 1.0 on base10/svo/default/shift0, ~0 elsewhere), so the table says
# what the checkpoint's numbers mean. Each row writes its EvalRecord into the run layout's eval dir and is
# skipped when that record exists (resumable).
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
# Two variants per task (the everyday rule and one counterfactual), every setting, short prompts.
cells=(arithmetic:base10,base9 syntax:svo,ovs spatial:default,r90 cipher:shift0,shift13)
# The demo model reads 512 positions: two demonstrations keep every prompt plus its answer inside that.
common=(--tasks "${cells[@]}" --limit 3 --n_shots 2 --cipher_words 20)
records=()
for harness in oracle rule_blind; do
  out="$(run_layout eval "$run_dir" solverlearner "$harness")"
  if [[ -f "$out/record.json" ]]; then
    echo "== solverlearner: $harness row already done ($out)" >&2
  else
    echo "== solverlearner: $harness row (harness check)" >&2
    mkdir -p "$out"
    "$PY" -m evals.solverlearner run --harness "$harness" "${common[@]}" --out "$out" > "$out/last.json"
  fi
  records+=("$harness=$out/record.json")
done
mapfile -t models < <(demo_models "$run_dir")
model_records=()
for entry in "${models[@]}"; do
  read -r model ckpt <<<"$entry"
  out="$(run_layout eval "$run_dir" solverlearner "$model")"
  if [[ -f "$out/record.json" ]]; then
    echo "== solverlearner: $model row already done ($out)" >&2
  else
    read -r -a own <<<"$(demo_model_flags "$model" solverlearner)"
    echo "== solverlearner: $model row ($ckpt) ${own[*]}" >&2
    mkdir -p "$out"
    "$PY" -m evals.solverlearner run --checkpoint "$ckpt" --label "$model" "${common[@]}" \
      --max_new_tokens 12 --code_max_new_tokens 48 "${own[@]}" --out "$out" > "$out/last.json" </dev/null
  fi
  model_records+=("$model=$out/record.json")
done
records=("${model_records[@]}" "${records[@]}")
table="$(run_layout eval "$run_dir" solverlearner)/table.md"   # a human view; the report reads the records
"$PY" -m evals.solverlearner combine --results "${records[@]}" --out "$table"
echo "solverlearner: $table (per-row record.json, results.md, chart.png beside it)" >&2
