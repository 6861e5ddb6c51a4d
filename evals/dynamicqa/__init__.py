"""DynamicQA knowledge-conflict eval (REFERENCE §4): semantic entropy, coherent persuasion,
persuaded vs stubborn, by fact type (static, temporal, disputable).

Stages: `sample` (model → samples.jsonl + distribution file), `score` (samples → scores.jsonl,
distributions.png and the summary), `record` (the summary as an EvalRecord, record.json). CLI:
`python -m evals.dynamicqa run|score`.
"""
