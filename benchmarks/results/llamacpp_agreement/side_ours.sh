#!/bin/bash
# Our in-process side of the agreement measurement, on the checkpoint imported from the same GGUF.
# $1: float32 | bfloat16
cd /work/wt-llama
OUT=/tmp/lcpp_runs
D=$1; S=${D/float32/fp32}; S=${S/bfloat16/bf16}
date
/usr/bin/time -v .venv/bin/python -m evals.case2code run --checkpoint /tmp/smol135 --chat --decode_dtype $D --batch_size 8 \
  --limit 24 --out $OUT/c2c_$S 2> $OUT/c2c_$S.err | tail -1 > $OUT/c2c_$S.json
date
/usr/bin/time -v .venv/bin/python -m evals.solverlearner run --checkpoint /tmp/smol135 --chat --decode_dtype $D --batch_size 8 \
  --tasks arithmetic:base10,base8 syntax:svo,sov cipher:shift0,shift3 --settings deductive_zeroshot inductive_fewshot \
  --limit 12 --out $OUT/sl_$S 2> $OUT/sl_$S.err | tail -1 > $OUT/sl_$S.json
date
