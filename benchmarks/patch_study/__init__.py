"""Patch-level training measured where it can hold: a compute-optimal CPU study with seeds.

`python -m benchmarks.patch_study [--out DIR] [--budget_minutes N] [--only RUN ...] [--report_only]`
trains the rows of `plan.py` with 3 seeds each (30 runs, ~14.6 main-size token-run equivalents): at the
main size token-only at 1x, 1/2x and 2/3x of the token budget (each with its own full schedule), K = 4
with λ ∈ {1/2, 2/3, 4/5} and K ∈ {2, 8} at λ = 2/3; at a small size (a quarter of the parameters, the
same tokens per parameter) token-only and K = 4, λ = 2/3. Runs train tier by tier (`plan.ROWS`): the
headline comparison with all its seeds first. Each run is a `patch_training.two_stage` run dir
configured by `configs/experiments/patch/study/<row>.gin`; a rerun skips finished runs and resumes an
interrupted one from its checkpoint. The default `--out` is `benchmarks/results/patch_study/runs/`,
committed without checkpoints (its `.gitignore`), so a study resumes on another machine with its
finished runs kept. Validation loss on the corpus's held-out code split (in domain) and on
WikiText-103 (out of domain) is logged 6 times per stage and at the end. The report
(`benchmarks/results/patch_study/`: results.md, loss_vs_compute.png, summary.json) is built from the run
dirs only (`--report_only`), with paired 95% intervals over seeds and a ±0.02-nat equivalence margin
declared in `report.py` before any number.

Sizing (measured on this 2-core CPU, under the shared CPU lock, bf16 compute with oneDNN,
`benchmarks.train_throughput --batch 32 --sequence_length 128`):

| candidate (4 layers, vocab 1024) | params: all / without tables | tokens/s median (best) | tokens at 20/param | 6.61 runs at 20/param |
|---|---|---|---|---|
| d 64, ffn 176 | 332,352 / 201,280 | 32,720 (41,006) | 6.6M | 0.37 h |
| **d 96, ffn 256 (chosen)** | **639,840 / 443,232** | **25,524 (28,143)** | 12.8M | 0.92 h |
| d 128, ffn 352 | 1,066,112 / 803,968 | 15,733 (20,347) | 21.3M | 2.49 h |

Chosen: d 96 with 14,745,600 tokens per run (3600 token steps of 32 x 128): 23.0 tokens per
parameter (33.3 per non-embedding parameter). Expected: 6.61 x 14.75M / 25.5K tokens/s = 1.06 h of
train steps, plus ~1-2 min per run of compilation and validation (~0.3 h), plus the first-time
corpus, tokenizer and row-cache builds: about 1.5 h on 2 quiet cores, inside the 2-hour target. The
next size up would need 2.5 h of steps alone. Every step of both stages takes 32 x 128 tokens (the
patch stage 32/K rows of K·128 tokens, the recipe of the official scripts; issue 25), so the patch stage
has λ of the steps, each with 1/K of a token step's positions in the network, and a run's time scales
with λ/K + (1 − λ). The results committed in `benchmarks/results/patch_study/` predate that fix (their
patch stages took 32 rows of K·128 tokens per step): see the README there.

Parameters are counted with both (untied) embedding tables, the Chinchilla convention: the stricter
count at this size, where the tables are a third of the model. The vocabulary is a sentencepiece
model of 1024 pieces trained on the standard library; with the house's 8192 pieces the tables alone
would hold 1.6M parameters and the output layer would dominate the step. The corpus is the standard
library plus pandas, networkx, matplotlib and sympy from site-packages (`patch_training.data.code_mix`),
so each run reads its 14.7M tokens once, without repeating data.

Input pipeline (`python -m benchmarks.patch_study.pipeline_check --out runs/study_smoke`, on the smoke's
row caches, same row format): 0.5-0.7 ms per 32-row batch, 5.9M tokens/s at K=1 up to 54M at K=8,
against the trainer's 20K-160K (K x the token rate): 290-390x headroom (measured when a patch step held
32 rows; the smoke's K=8 patch stage then ran at 0.187 s/step = 175K tokens/s). First use builds
the code mix (~100 MB JSONL, seconds), the 1024-piece tokenizer (~30 s), the TFDS copy (~40 s) and
one row cache per row length (128, 256, 512, 1024 tokens) at 0.2-0.4M tokens/s: about 5 minutes for
the study's 16.5M tokens, once.
"""
