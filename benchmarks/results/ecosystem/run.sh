#!/bin/bash
# The ecosystem figures of issue 27 on SmolLM2-135M-Instruct (imported from the cached GGUF), from the repo root:
# the openai SDK transcript against evals.serve, and lm-eval's patchtrain_mc task in process and through the server.
set -euo pipefail
R=benchmarks/results/ecosystem
CK=${CK:-/tmp/smol135}
[ -f $CK/model_config.json ] || .venv/bin/python -m patch_training.hf_convert import \
    --gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --out $CK
PORT=8977
.venv/bin/python -m evals.serve --checkpoint $CK --port $PORT --model_name smollm2 --batch_size 8 \
    --max_model_len 2048 > /tmp/ecosystem_server.log 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null' EXIT
for i in $(seq 1 180); do curl -sf http://127.0.0.1:$PORT/v1/models > /dev/null && break; sleep 1; done
.venv/bin/python $R/sdk_transcript.py --base_url http://127.0.0.1:$PORT/v1 --model smollm2 > $R/sdk_transcript.md
rm -rf /tmp/ecosystem_lm_eval
.venv/bin/python -m evals.lm_eval_harness run --model patchtrain --model_args checkpoint=$CK,batch_size=8 \
    --include_path evals/lm_eval_tasks --tasks patchtrain_mc --output_path /tmp/ecosystem_lm_eval/in_process \
    --log_samples > $R/lm_eval_in_process.txt 2>&1
.venv/bin/python -m evals.lm_eval_harness run --model local-completions --batch_size 4 \
    --model_args model=smollm2,base_url=http://127.0.0.1:$PORT/v1/completions,tokenized_requests=True \
    --include_path evals/lm_eval_tasks --tasks patchtrain_mc --output_path /tmp/ecosystem_lm_eval/server \
    --log_samples > $R/lm_eval_server.txt 2>&1
.venv/bin/python $R/compare_lm_eval.py /tmp/ecosystem_lm_eval/in_process /tmp/ecosystem_lm_eval/server > $R/lm_eval_agreement.json
