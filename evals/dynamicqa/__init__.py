"""DynamicQA knowledge-conflict eval (REFERENCE §4): semantic entropy, coherent persuasion,
persuaded vs stubborn, by fact type (static, temporal, disputable).

Stages: `sample` (model → samples.jsonl + distribution file), `score` (samples → scores.jsonl,
summary.json, distributions.png). CLI: `python -m evals.dynamicqa run|score`.
"""
