"""Case2Code pass@1 as a training hook: at the end of a stage, the params being trained, in this process.

The model is a `JaxModel` (the `LanguageModel` interface) over the trainer's current params and the run's
vocabulary; `evals.case2code.evaluate.run` generates, judges in the sandbox and writes its `EvalRecord`
to `<run dir>/case2code_eval/`. The fine-tuning package may not import this eval (DESIGN's import table),
so `configs/runs/finetune.gin` hands the hook to the training entry: `training.train.hooks`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gin

from patch_training.contract.layout import cache_dir
from patch_training.errors import squash
from patch_training.multihost import is_primary, say_primary as _say
from patch_training.train_hooks import HookInfo, OpenHook

# The key fine-tuning reads the hook's outcome under (`finetune.json`: case2code_pass_at_1).
HOOK_NAME = "case2code_pass_at_1"
OUT_DIR = "case2code_eval"


def host_params(params: Any) -> Any:
    """The params as host arrays: gathered across processes when they span several (every host joins)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(params, tiled=True)
    return jax.device_get(params)


class PassAt1:
    """Greedy pass@1 on the first `limit` rows of `data` (nothing when limit is 0)."""

    def __init__(self, data: str | None, limit: int, *, max_new_tokens: int = 2048, batch_size: int = 8,
                 workers: int | None = None):
        self.data, self.limit = data, int(limit)
        self.max_new_tokens, self.batch_size, self.workers = max_new_tokens, batch_size, workers

    def __call__(self, info: HookInfo) -> dict | None:
        if self.limit <= 0:
            return {"status": "not requested"}
        if not self.data or not Path(self.data).is_file():
            _say(f"skipping Case2Code pass@1: held-out file {self.data!r} not found")
            return {"status": "skipped", "reason": f"data {self.data!r} not found"}
        params = host_params(info.params)  # a collective on several hosts: before the primary-only part
        if not is_primary():
            return None
        out = Path(info.trainer.run_dir) / OUT_DIR
        _say(f"Case2Code pass@1 on {self.limit} held-out rows of {self.data}, in process -> {out}")
        t0 = time.perf_counter()
        try:
            record = self._evaluate(info, params, out)
        except Exception as e:  # noqa: BLE001 - the stage itself completed and is saved; report, do not lose it
            _say(f"Case2Code pass@1 failed: {squash(e, 300)}; fine-tuning itself completed")
            return {"status": "failed", "error": squash(e, 300), "out": str(out),
                    "wall_s": round(time.perf_counter() - t0, 1)}
        return {"status": "completed", "out": str(out), "wall_s": round(time.perf_counter() - t0, 1),
                "summary": record.summary}

    def _evaluate(self, info: HookInfo, params: Any, out: Path):
        from evals.backends.jax_backend import JaxModel
        from evals.backends.text_vocab import open_text_vocab
        from evals.case2code.evaluate import run
        from evals.gen_cache import CachedModel
        from evals.model_api import Sampling
        from patch_training.data.vocab import resolve_spec

        run_dir = Path(info.trainer.run_dir)
        vocab = open_text_vocab(resolve_spec(info.trainer.vocab_spec, run_dir), add_bos=None, default_add_bos=False,
                                name=str(run_dir))
        model = CachedModel(JaxModel(info.trainer.model_config, params, vocab, batch_size=self.batch_size,
                                     name=str(run_dir)), str(cache_dir(out)), chunk=self.batch_size)
        return run(model, data=self.data, out=out, sampling=Sampling(max_new_tokens=self.max_new_tokens),
                   limit=self.limit, workers=self.workers, label=run_dir.name,
                   config={"model": str(run_dir), "step": info.step})


@gin.configurable(module="finetune_hook")
def case2code_pass_at_1(*, data: str | None = None, limit: int = 0, max_new_tokens: int = 2048,
                        batch_size: int = 8) -> OpenHook:
    """The end-of-stage pass@1 hook (its outcome under `TrainResult.hook_results['case2code_pass_at_1']`)."""
    return OpenHook(PassAt1(data, limit, max_new_tokens=max_new_tokens, batch_size=batch_size), name=HOOK_NAME)
