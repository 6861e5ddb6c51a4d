#!/usr/bin/env bash
# Main job: train the `small` model on the default code corpus (this interpreter's standard library)
# for a few minutes on CPU, report validation perplexity, sample completions with the decoding CLI,
# and leave the loss curve (loss_curve.png) in the run directory. Re-running resumes / re-reports.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${1:-runs/demo}"
PY="${PY:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
mkdir -p "$run_dir"

echo "== 1/3 train: small model, code corpus, $(nproc) CPU cores -> $run_dir" >&2
"$PY" -m patch_training.train \
  --gin_file=configs/experiments/small_cpu.gin \
  --gin.MODEL_DIR="'$run_dir'" "${@:2}" | tee "$run_dir/train_summary.txt"

echo "== 2/3 sample completions with evals.generate (temperature 0.8, top-k 40, 48 new tokens)" >&2
cat > "$run_dir/demo_prompts.jsonl" <<'PROMPTS'
{"id": "fib", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"}
{"id": "class", "text": "class Stack:\n    def __init__(self):\n"}
{"id": "import", "text": "import os\nimport sys\n\n\ndef main(argv):\n"}
{"id": "loop", "text": "    for i in range(len(items)):\n        if "}
PROMPTS
"$PY" -m evals.generate --checkpoint "$run_dir" --prompts "$run_dir/demo_prompts.jsonl" \
  --out "$run_dir/demo_samples.jsonl" --max_new_tokens 48 --temperature 0.8 --top_k 40 --seed 0

echo "== 3/3 report" >&2
"$PY" - "$run_dir" <<'REPORT'
import json, math, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
train = [r for r in rows if isinstance(r.get("loss"), float)]
evals = [r for r in rows if "eval/loss" in r]
prompts = {json.loads(l)["id"]: json.loads(l)["text"] for l in (run / "demo_prompts.jsonl").read_text().splitlines()}
print(f"run dir: {run}")
if train:
    print(f"train loss: {train[0]['loss']:.3f} (step {train[0]['step']}) -> {train[-1]['loss']:.3f} (step {train[-1]['step']})")
if evals:
    e = evals[-1]
    print(f"validation (held-out code split) at step {e['step']}: loss {e['eval/loss']:.4f} nats/token, "
          f"perplexity {e['eval/perplexity']:.2f}")
for line in (run / "demo_samples.jsonl").read_text().splitlines():
    rec = json.loads(line)
    print(f"\n--- {rec['id']} ---\n{prompts.get(rec['id'], '')}\033[1m{rec['samples'][0]['text']}\033[0m")
print(f"\nloss curve: {run / 'loss_curve.png'}")
REPORT
