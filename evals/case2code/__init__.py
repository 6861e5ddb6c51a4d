"""The Case2Code eval (REFERENCE §2): generate -> judge in the sandbox -> score, each stage re-runnable.

    python -m evals.case2code run   --checkpoint DIR | --hf_dir DIR | --endpoint URL [--data F] --out DIR
    python -m evals.case2code score --data F --predictions P.jsonl --out V.jsonl

Modules: `data` (rows), `protocol` (prompt + reminder, the official code extractor), `judge` (sandboxed
verdicts and the gold ceiling), `passk` (estimators), `record` (the run as an EvalRecord, record.json), `report` (results.md + PNG
from the record), `cli`.
"""
