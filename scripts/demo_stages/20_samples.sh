#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
echo "== sample completions from the final model with evals.generate (temperature 0.8, top-k 40)" >&2
cat > "$run_dir/demo_prompts.jsonl" <<'PROMPTS'
{"id": "fib", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"}
{"id": "class", "text": "class Stack:\n    def __init__(self):\n"}
{"id": "import", "text": "import os\nimport sys\n\n\ndef main(argv):\n"}
{"id": "loop", "text": "    for i in range(len(items)):\n        if "}
PROMPTS
"$PY" -m evals.generate --checkpoint "$run_dir/stage2_token" --prompts "$run_dir/demo_prompts.jsonl" \
  --out "$run_dir/demo_samples.jsonl" --max_new_tokens 48 --temperature 0.8 --top_k 40 --seed 0

