#!/bin/bash
cd /work/wt-llama
export PYTHONPATH=.
date
.venv/bin/python -m benchmarks.llamacpp_logits --checkpoint /tmp/smol135 --prompts 4 --steps 32 --work_dir /tmp/lcpp_work \
  > /tmp/lcpp_runs/logits.out 2> /tmp/lcpp_runs/logits.err
date
.venv/bin/python -m benchmarks.llamacpp_decode --checkpoint /tmp/smol135 --rows 8 --new_tokens 256 --batch 8 --repeats 2 \
  > /tmp/lcpp_runs/decode.out 2> /tmp/lcpp_runs/decode.err
date
