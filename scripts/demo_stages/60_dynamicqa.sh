#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# DynamicQA knowledge conflict on the demo's own checkpoint: the first few rows of each fact type
# (static, temporal, disputable), 10 samples per prompt at T=0.5 with full-vocabulary distributions,
# answers grouped with the `rouge` judge (ROUGE-L F1 > 0.3; no NLI weights needed), then semantic
# entropy, coherent persuasion and persuaded / stubborn per fact type. Resumable: sampled items are
# skipped on a rerun (and the generation cache keeps finished samples), a finished run is not redone.
set -euo pipefail
run_dir="$1"
PY="${PY:-.venv/bin/python}"
out="$run_dir/dynamicqa"
limit="${DYNAMICQA_LIMIT:-2}"
if ! "$PY" -c "import evals.backends" 2>/dev/null; then
  echo "== dynamicqa: skipped (evals.backends, the model plumbing this eval needs, is not in this checkout)" >&2
  exit 0
fi
if [ ! -d "$run_dir/stage2_token" ]; then
  echo "== dynamicqa: skipped (no checkpoint at $run_dir/stage2_token)" >&2
  exit 0
fi
if [ -f "$out/summary.json" ] && [ -f "$out/.done_limit_$limit" ]; then
  echo "== dynamicqa: already done ($out/summary.json)" >&2
  exit 0
fi
echo "== dynamicqa: $limit rows per fact type, 10 samples per prompt, judge rouge -> $out" >&2
"$PY" -m evals.dynamicqa run --checkpoint "$run_dir/stage2_token" --out "$out" --limit "$limit" \
  --judge rouge
touch "$out/.done_limit_$limit"
