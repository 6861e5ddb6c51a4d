#!/bin/bash
# The llama.cpp side of the agreement measurement: its server on the GGUF, our evals through --endpoint.
cd /work/wt-llama
OUT=/tmp/lcpp_runs
PORT=8931
.venv/bin/python -m llama_cpp.server --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 \
  --port $PORT --n_ctx 4096 --n_threads 2 --n_threads_batch 2 --chat_format chat_template.default \
  > $OUT/server.log 2>&1 &
SERVER=$!
trap "kill $SERVER" EXIT
for i in $(seq 100); do curl -sf localhost:$PORT/v1/models >/dev/null && break; sleep 0.5; done
URL=http://127.0.0.1:$PORT/v1
date
/usr/bin/time -v .venv/bin/python -m evals.solverlearner run --endpoint $URL --chat --chat_template_dir /tmp/smol135 \
  --tasks arithmetic:base10,base8 syntax:svo,sov cipher:shift0,shift3 --settings deductive_zeroshot inductive_fewshot \
  --limit 12 --out $OUT/sl_llamacpp --timeout_s 600 2> $OUT/sl_llamacpp.err | tail -1 > $OUT/sl_llamacpp.json
date
/usr/bin/time -v .venv/bin/python -m evals.case2code run --endpoint $URL --chat --limit 40 --out $OUT/c2c_llamacpp \
  --timeout_s 900 2> $OUT/c2c_llamacpp.err | tail -1 > $OUT/c2c_llamacpp.json
date
