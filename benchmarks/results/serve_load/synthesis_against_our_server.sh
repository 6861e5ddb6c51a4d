#!/bin/bash
# #27: the Case2Code synthesis run with LLM-written inputs against our own server (SmolLM2, bf16), default client
# (8 in flight, 120 s timeout, retries). Usage: synth_vs_serve.sh OUTDIR
set -u
cd "$(dirname "$0")/../../.."
OUT=$1; mkdir -p $OUT
CK=/tmp/smol135
[ -f $CK/model_config.json ] || .venv/bin/python -m patch_training.hf_convert import --gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --out $CK > $OUT/import.log 2>&1
.venv/bin/python -m evals.serve --checkpoint $CK --port 8977 --decode_dtype bfloat16 --batch_size 16 --max_model_len 2048 > $OUT/server.log 2>&1 &
SP=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8977/v1/models > /dev/null && break; sleep 1; done
t0=$(date +%s)
/usr/bin/time -v .venv/bin/python -m case2code_finetune.synthesize --inputs llm --endpoint http://127.0.0.1:8977/v1 \
   --max_functions 15 --out $OUT/synth > $OUT/synth.log 2> $OUT/synth.err
echo "synth rc=$? wall=$(( $(date +%s) - t0 ))s" | tee $OUT/summary.txt
kill $SP; wait $SP 2>/dev/null
grep -c "BrokenPipe" $OUT/server.log | sed 's/^/BrokenPipe lines: /' | tee -a $OUT/summary.txt
