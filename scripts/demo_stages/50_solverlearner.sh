#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# SolverLearner on the demo checkpoint (a few problems per cell), next to the oracle (must be 1.0) and the
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
if ! "$PY" -c "import evals.backends" 2>/dev/null; then
  echo "== solverlearner: checkpoint row skipped: evals.backends is not in this checkout yet (oracle and rule-blind rows only)" >&2
elif [[ ! -d "$run_dir/stage2_token" ]]; then
  echo "== solverlearner: checkpoint row skipped: no $run_dir/stage2_token" >&2
else
  if [[ -f "$out/checkpoint/results.json" ]]; then
    echo "== solverlearner: checkpoint row already done ($out/checkpoint)" >&2
  else
    echo "== solverlearner: checkpoint row ($run_dir/stage2_token)" >&2
    # A failure here is reported in one line and leaves the harness rows standing (the demo goes on).
    "$PY" -m evals.solverlearner run --checkpoint "$run_dir/stage2_token" "${common[@]}" \
      --max_new_tokens 12 --code_max_new_tokens 48 --out "$out/checkpoint" > "$out/checkpoint.last.json" \
      || echo "== solverlearner: checkpoint row FAILED (exit $?); its log is above" >&2
  fi
  [[ -f "$out/checkpoint/results.json" ]] && results=("checkpoint=$out/checkpoint/results.json" "${results[@]}")
fi
"$PY" -m evals.solverlearner combine --results "${results[@]}" --out "$out/table.md"
echo "solverlearner report: $out/table.md (per-run results.md, chart.png under $out/<row>/)" >&2
