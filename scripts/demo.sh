#!/usr/bin/env bash
# Main job: patch-level training end to end on CPU in a few minutes.
#   1. two-stage training of the `small` model on the default code corpus (this interpreter's
#      standard library): K=4 patches on 2/3 of the token budget, then tokens on the rest, starting
#      from the patch model's parameters (python -m patch_training.two_stage);
#   2. validation perplexity of both stages on the held-out code split and on WikiText-103
#      (../shared/data; skipped with a message when absent), and the cost relative to token-only;
#   3. sampled completions from the final model with the decoding engine (python -m evals.generate);
#   4. loss curves (loss_curve.png in each stage directory).
# Re-running resumes where it stopped and re-reports. Extra arguments go to the trainer (gin flags).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${1:-runs/demo}"
PY="${PY:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$run_dir"

echo "== 1/3 two-stage patch-level training: small model, code corpus, $(nproc) CPU cores -> $run_dir" >&2
"$PY" -m patch_training.two_stage \
  --gin_file=configs/experiments/patch/demo_small_cpu.gin \
  --gin.MODEL_DIR="'$run_dir'" "${@:2}"

echo "== 2/3 sample completions from the final model with evals.generate (temperature 0.8, top-k 40)" >&2
cat > "$run_dir/demo_prompts.jsonl" <<'PROMPTS'
{"id": "fib", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"}
{"id": "class", "text": "class Stack:\n    def __init__(self):\n"}
{"id": "import", "text": "import os\nimport sys\n\n\ndef main(argv):\n"}
{"id": "loop", "text": "    for i in range(len(items)):\n        if "}
PROMPTS
"$PY" -m evals.generate --checkpoint "$run_dir/stage2_token" --prompts "$run_dir/demo_prompts.jsonl" \
  --out "$run_dir/demo_samples.jsonl" --max_new_tokens 48 --temperature 0.8 --top_k 40 --seed 0

echo "== 3/3 report" >&2
"$PY" - "$run_dir" <<'REPORT'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
cost = json.loads((run / "cost.json").read_text())
print(f"run dir: {run}")
print(f"patch size K={cost['patch_size']}, patch fraction lambda={cost['patch_fraction']}, "
      f"relative cost {cost['relative_cost']:.3f} ({cost['relative_cost_formula']}), "
      f"analytic FLOPs {cost['relative_flops_analytic']:.3f} of token-only, wall {cost['total_wall_s']:.0f} s")
for stage_dir in sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("stage")):
    ev = stage_dir / "eval.json"
    if not ev.is_file():
        print(f"{stage_dir.name}: not finished"); continue
    rec = json.loads(ev.read_text())
    shown = ", ".join(f"{name}: loss {m['loss']:.4f} ppl {m['perplexity']:.2f}" for name, m in rec["eval"].items())
    print(f"{stage_dir.name} (step {rec['step']}): validation {shown}   loss curve: {stage_dir / 'loss_curve.png'}")
prompts = {json.loads(l)["id"]: json.loads(l)["text"] for l in (run / "demo_prompts.jsonl").read_text().splitlines()}
for line in (run / "demo_samples.jsonl").read_text().splitlines():
    rec = json.loads(line)
    print(f"\n--- {rec['id']} ---\n{prompts.get(rec['id'], '')}\033[1m{rec['samples'][0]['text']}\033[0m")
REPORT
