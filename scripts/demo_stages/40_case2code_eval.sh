#!/usr/bin/env bash
# Demo stage: the Case2Code eval of the demo's own models (both pre-trained runs and the fine-tuned one) and the
# real pretrained model (scripts/demo_lib/models.sh, which also gives each model its own flags), with the gold
# ceiling beside each score.
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
out_root="$run_dir/case2code_eval"

eval_one() {  # model-label checkpoint name data
  local model="$1" ckpt="$2" name="$3" data="$4" out="$out_root/$1/$3"
  local flags=(--limit "$limit" --max_new_tokens "$max_new" --batch_size 4)
  read -r -a own <<<"$(demo_model_flags "$model" "case2code/$name")"
  if [[ "${own[*]}" == skip ]]; then
    echo "== case2code eval ($model, $name): not evaluated (scripts/demo_lib/models.sh)" >&2
    return 0
  fi
  flags+=("${own[@]}")
  if [[ -f "$out/results.json" ]]; then
    echo "== case2code eval ($model, $name): already done, $out/results.md" >&2
  else
    echo "== case2code eval ($model, $name): $data, greedy, ${flags[*]}" >&2
    "$PY" -m evals.case2code run --checkpoint "$ckpt" --data "$data" --out "$out" "${flags[@]}" >/dev/null
  fi
  "$PY" - "$out/results.json" "$model/$name" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); s = r["summary"]; g = s["gold"]
print(f"case2code {sys.argv[2]:<20} pass@1 {s['pass_at_1']:.3f}  gold ceiling {s['gold_ceiling']:.3f} "
      f"({g['passed']}/{g['rows']})  statuses {s['counts_by_status']}  wall {r['wall_s']['total']}s")
PYEOF
}

mapfile -t models < <(demo_models "$run_dir")
for entry in "${models[@]}"; do
  read -r model ckpt <<<"$entry"
  if [[ -f "$run_dir/case2code_data/test.jsonl" ]]; then
    eval_one "$model" "$ckpt" synthetic "$run_dir/case2code_data/test.jsonl"
  else
    echo "== case2code eval: no $run_dir/case2code_data/test.jsonl (the synthesis stage did not run); official slice only" >&2
  fi
  eval_one "$model" "$ckpt" official "${C2C_OFFICIAL_DATA:-../shared/data/case2code/test.jsonl}"
done
