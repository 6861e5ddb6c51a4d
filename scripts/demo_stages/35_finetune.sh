#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
# Direct Case2Code fine-tuning of the pretrained model on the set the job synthesised; reports the
# validation answer-token loss before and after. Resumable: a finished run is only reported.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
data="$(run_layout stage "$run_dir" case2code_data)"
out="$(run_layout stage "$run_dir" finetune)"
if [[ ! -f "$data/train.jsonl" || ! -f "$data/validation.jsonl" ]]; then
  echo "== Case2Code fine-tuning skipped: no synthesised data in $data (train.jsonl + validation.jsonl)" >&2
  exit 0
fi
read -r _ init < <(DEMO_EVAL_MODELS=patch demo_models "$run_dir") || true
if [[ -z "${init:-}" ]]; then
  echo "== Case2Code fine-tuning skipped: the run's manifest has no pretrained 'patch' model (stage 10_pretrain)" >&2
  exit 0
fi
if "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s.get("status")=="completed" else 1)' \
     "$out/finetune.json" 2>/dev/null; then
  echo "== Case2Code fine-tuning already completed in $out" >&2
else
  echo "== Case2Code fine-tuning (direct variant): $init on $data -> $out" >&2
  "$PY" -m case2code_finetune.finetune \
    --gin_file=configs/experiments/case2code/direct_small_cpu.gin \
    --gin.MODEL_DIR="'$out'" --gin.INIT_CHECKPOINT="'$init'" \
    --gin.CASE2CODE_DATA_DIR="'$data'" "$@"
fi
run_layout add "$run_dir" --name finetuned --checkpoint "$out" --stage 35_finetune
"$PY" - "$out/finetune.json" <<'REPORT'
import json, sys
s = json.load(open(sys.argv[1]))
for name in sorted(set(s.get("before", {})) | set(s.get("after", {}))):
    b, a = s.get("before", {}).get(name), s.get("after", {}).get(name)
    fmt = lambda m: f"{m['loss']:.4f} (ppl {m['perplexity']:.2f})" if m else "n/a"
    print(f"Case2Code fine-tuning, {name} answer-token loss: before {fmt(b)} -> after {fmt(a)} "
          f"at step {s.get('final_step')}")
REPORT
