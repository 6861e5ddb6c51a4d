#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
read -r _ ckpt < <(DEMO_EVAL_MODELS=patch demo_models "$run_dir") || true
if [[ -z "${ckpt:-}" ]]; then
  echo "== samples skipped: the run's manifest has no 'patch' model (stage 10_pretrain has not finished)" >&2
  exit 0
fi
prompts="$(run_layout file "$run_dir" prompts)"
echo "== sample completions from the final model ($ckpt) with evals.generate (temperature 0.8, top-k 40)" >&2
cat > "$prompts" <<'PROMPTS'
{"id": "fib", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"}
{"id": "class", "text": "class Stack:\n    def __init__(self):\n"}
{"id": "import", "text": "import os\nimport sys\n\n\ndef main(argv):\n"}
{"id": "loop", "text": "    for i in range(len(items)):\n        if "}
PROMPTS
"$PY" -m evals.generate --checkpoint "$ckpt" --prompts "$prompts" \
  --out "$(run_layout file "$run_dir" samples)" --max_new_tokens 48 --temperature 0.8 --top_k 40 --seed 0

