"""The Case2Code eval in process: `run(model, data=..., out=...) -> EvalRecord` for any `LanguageModel`.

`python -m evals.case2code run` opens a model from its flags and calls this; a training run calls it on
the params it holds (`evals.case2code.finetune_hook`). Generate -> judge in the sandbox (never in this
process) -> score; writes predictions.jsonl, samples.jsonl, record.json, results.md and results.png to `out`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from evals.model_api import LanguageModel, Sampling
from patch_training.contract.layout import record_file
from patch_training.contract.records import EvalRecord
from patch_training.errors import UserError

log = logging.getLogger("evals.case2code")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def open_pool(workers: int | None):
    from evals.case2code.judge import JUDGE_LIMITS
    from evals.execution import SandboxPool, SandboxUnavailable
    try:
        return SandboxPool(workers, limits=JUDGE_LIMITS)  # before any gold data is read
    except SandboxUnavailable as e:
        raise UserError(f"the sandbox is unavailable: {e}") from None


def run(model: LanguageModel | Callable[[], LanguageModel], *, data: str, out: str | os.PathLike,
        sampling: Sampling, num_samples: int = 1, limit: int | None = None, workers: int | None = None,
        label: str | None = None, config: dict[str, Any] | None = None,
        on_problems: Callable[[dict], None] | None = None) -> EvalRecord:
    """Generate, judge and score `limit` rows of `data`; the record is also written to `record_file(out)`.

    model: the model, or a zero-argument opener (called after the sandbox started and the rows were read,
    so a missing sandbox or bad data fails before a slow load). config: the run's settings for the record
    (sampling, limit and sample count are added). on_problems: told of skipped data rows ({reason: count}).
    """
    from evals.case2code.data import count_rows, load_rows
    from evals.case2code.protocol import eval_prompt, prompt_hash
    from evals.case2code.record import make_record
    from evals.case2code.report import write_markdown, write_plot
    from evals.case2code.scoring import score
    from evals.provenance import records_hash

    t0 = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open_pool(workers) as pool:
        rows, problems = load_rows(data, limit)
        if on_problems is not None:
            on_problems(problems)
        if callable(model) and not hasattr(model, "generate"):
            model = model()
        log.info("model %s (fingerprint %s); %d rows x %d sample(s)", type(getattr(model, "inner", model)).__name__,
                 model.fingerprint, len(rows), num_samples)
        prompts = [eval_prompt(r) for r in rows]
        t_gen = time.monotonic()
        kw = {"progress": True} if hasattr(model, "cache") else {}
        completions = model.generate(prompts, num_samples, sampling, **kw)
        gen_s = time.monotonic() - t_gen
        preds = [{"id": r["id"], "sample": j, "completion": c.text, "finish_reason": c.finish_reason,
                  "n_tokens": len(c.token_ids)} for r, cs in zip(rows, completions) for j, c in enumerate(cs)]
        write_jsonl(out / "predictions.jsonl", preds)
        t_judge = time.monotonic()
        verdicts, summary = score(pool, rows, preds)
        judge_s = time.monotonic() - t_judge
    hashes = {r["id"]: prompt_hash(p) for r, p in zip(rows, prompts)}
    by_key = {(p["id"], p["sample"]): p for p in preds}
    write_jsonl(out / "samples.jsonl", (
        {"id": v["id"], "sample": v["sample"], "prompt_hash": hashes[v["id"]],
         "completion": by_key[(v["id"], v["sample"])]["completion"], "finish_reason":
         by_key[(v["id"], v["sample"])]["finish_reason"], "code": v["code"], "extract": v["extract"],
         "status": v["status"], "passed": v["passed"], "n_inputs": v["n_inputs"], "n_matched": v["n_matched"],
         "verdicts": v["verdicts"], "first_mismatch": v.get("first_mismatch")} for v in verdicts))
    cache = getattr(model, "cache", None)
    settings = {"limit": limit, "num_samples": num_samples, "max_new_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
                "chat": sampling.chat, **(config or {}), "judge_limits": {"program_wall_s": 10.0},
                "sampling": sampling.key(), "prompt": "row prompt + official call-signature reminder",
                "extractor": "official unwrap_code (```python block, else first bare ``` block, else whole)"}
    extra = {"data_rows_in_file": count_rows(data),
             "cache_hits": None if cache is None else model.hits,
             "cache_misses": None if cache is None else model.misses,
             "wall_s": round(time.monotonic() - t0, 2), "generate_s": round(gen_s, 2), "judge_s": round(judge_s, 2)}
    record = make_record(model_name=label or settings.get("model"), model_fingerprint=model.fingerprint,
                         data=str(data), data_hash=records_hash(rows), config=settings, summary=summary,
                         skipped_data_rows=dict(problems), extra=extra)
    record.write(record_file(out))
    write_markdown(record, out / "results.md")
    write_plot(record, out / "results.png")
    if cache is not None:
        model.close()
    return record
