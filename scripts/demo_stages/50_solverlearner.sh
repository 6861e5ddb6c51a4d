#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# SolverLearner on the demo's models and the real one (scripts/demo_lib/models.sh, with each model's own flags;
# a few problems per cell), next to the oracle (must be 1.0) and the
# rule-blind backend (the everyday rule: 1.0 on base10/svo/default/shift0, ~0 elsewhere), so the table says
# what the checkpoint's numbers mean. Each row is skipped when its results.json exists (resumable).
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
out="$run_dir/solverlearner"
mkdir -p "$out"
# Two variants per task (the everyday rule and one counterfactual), every setting, short prompts.
cells=(arithmetic:base10,base9 syntax:svo,ovs spatial:default,r90 cipher:shift0,shift13)
# The demo model reads 512 positions: two demonstrations keep every prompt plus its answer inside that.
common=(--tasks "${cells[@]}" --limit 3 --n_shots 2 --cipher_words 20)
results=()
for harness in oracle rule_blind; do
  if [[ -f "$out/$harness/results.json" ]]; then
    echo "== solverlearner: $harness row already done ($out/$harness)" >&2
  else
    echo "== solverlearner: $harness row (harness check)" >&2
    "$PY" -m evals.solverlearner run --harness "$harness" "${common[@]}" --out "$out/$harness" > "$out/$harness.last.json"
  fi
  results+=("$harness=$out/$harness/results.json")
done
source scripts/demo_lib/models.sh
mapfile -t models < <(demo_models "$run_dir")
model_results=()
for entry in "${models[@]}"; do
  read -r model ckpt <<<"$entry"
  if [[ -f "$out/$model/results.json" ]]; then
    echo "== solverlearner: $model row already done ($out/$model)" >&2
  else
    read -r -a own <<<"$(demo_model_flags "$model" solverlearner)"
    echo "== solverlearner: $model row ($ckpt) ${own[*]}" >&2
    "$PY" -m evals.solverlearner run --checkpoint "$ckpt" "${common[@]}" \
      --max_new_tokens 12 --code_max_new_tokens 48 "${own[@]}" --out "$out/$model" > "$out/$model.last.json" </dev/null
  fi
  model_results+=("$model=$out/$model/results.json")
done
results=("${model_results[@]}" "${results[@]}")
"$PY" -m evals.solverlearner combine --results "${results[@]}" --out "$out/table.md"
echo "solverlearner report: $out/table.md (per-run results.md, chart.png under $out/<row>/)" >&2
