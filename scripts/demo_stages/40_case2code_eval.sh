#!/usr/bin/env bash
# Demo stage: the Case2Code eval of every model in the run's manifest (the demo's own pre-trained and fine-tuned
# models and the real pretrained one; scripts/demo_lib/models.sh gives each model its own flags), with the gold
# ceiling beside each score. Each writes its EvalRecord into the run layout's eval dir for (model, data set).
# Run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set. Resumable: a finished eval is skipped and an
# interrupted one regenerates only the missing answers (the generation cache under each --out).
# The small CPU models write no working code yet: pass@1 = 0 next to the gold ceiling is the honest result.
set -euo pipefail
run_dir="$1"; shift || true
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
limit="${C2C_LIMIT:-12}"                 # rows per data set (the full official set is 500)
max_new="${C2C_MAX_NEW_TOKENS:-48}"      # the protocol allows 2048; the demo's own models cannot use them
                                         # (the real model keeps 2048 on its own slice: models.sh)

eval_one() {  # model-label checkpoint name data
  local model="$1" ckpt="$2" name="$3" data="$4" out
  out="$(run_layout eval "$run_dir" case2code "$model" "$name")"
  local flags=(--limit "$limit" --max_new_tokens "$max_new" --batch_size 4 --label "$model")
  read -r -a own <<<"$(demo_model_flags "$model" "case2code/$name")"
  if [[ "${own[*]}" == skip ]]; then
    echo "== case2code eval ($model, $name): not evaluated (scripts/demo_lib/models.sh)" >&2
    return 0
  fi
  flags+=("${own[@]}")
  if [[ -f "$out/record.json" ]]; then
    echo "== case2code eval ($model, $name): already done, $out/results.md" >&2
  else
    echo "== case2code eval ($model, $name): $data, greedy, ${flags[*]}" >&2
    "$PY" -m evals.case2code run --checkpoint "$ckpt" --data "$data" --out "$out" "${flags[@]}" >/dev/null
  fi
  "$PY" - "$out/record.json" "$model/$name" <<'PYEOF'
import sys
from patch_training.contract.records import EvalRecord
r = EvalRecord.read(sys.argv[1]); s = r.summary
statuses = {row["status"]: row["answers"] for row in r.table("statuses")}
print(f"case2code {sys.argv[2]:<20} pass@1 {s['pass_at_1']:.3f}  gold ceiling {s['gold_ceiling']:.3f} "
      f"({s['gold_passed']}/{s['gold_rows']})  statuses {statuses}  wall {s['wall_s']}s")
PYEOF
}

synthetic="$(run_layout stage "$run_dir" case2code_data)/test.jsonl"
mapfile -t models < <(demo_models "$run_dir")
for entry in "${models[@]}"; do
  read -r model ckpt <<<"$entry"
  if [[ -f "$synthetic" ]]; then
    eval_one "$model" "$ckpt" synthetic "$synthetic"
  else
    echo "== case2code eval: no $synthetic (the synthesis stage did not run); official slice only" >&2
  fi
  eval_one "$model" "$ckpt" official "${C2C_OFFICIAL_DATA:-../shared/data/case2code/test.jsonl}"
done
