#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR [gin flags...]`, with PY set.
set -euo pipefail
run_dir="$1"; shift
PY="${PY:-.venv/bin/python}"
echo "== report" >&2
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
