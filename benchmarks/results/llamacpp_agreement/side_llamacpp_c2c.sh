#!/bin/bash
# The llama.cpp side's Case2Code run, resumed from its generation cache on the first 24 rows.
cd /work/wt-llama
OUT=/tmp/lcpp_runs
PORT=8931
.venv/bin/python -m llama_cpp.server --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 \
  --port $PORT --n_ctx 4096 --n_threads 2 --n_threads_batch 2 --chat_format chat_template.default \
  > $OUT/server2.log 2>&1 &
SERVER=$!
trap "kill -9 $SERVER" EXIT TERM INT
for i in $(seq 100); do curl -sf localhost:$PORT/v1/models >/dev/null && break; sleep 0.5; done
date
/usr/bin/time -v .venv/bin/python -m evals.case2code run --endpoint http://127.0.0.1:$PORT/v1 --chat --limit 24 \
  --out $OUT/c2c_llamacpp --timeout_s 900 2> $OUT/c2c_llamacpp2.err | tail -1 > $OUT/c2c_llamacpp.json
date
