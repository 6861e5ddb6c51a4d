"""Validation: token-weighted loss and perplexity over one pass of a step-indexed dataset."""
from __future__ import annotations

import itertools
import math
import time
from typing import Any, Callable, Iterator

import jax
from jax.sharding import Mesh

from patch_training import partitioning as sharding_lib
from patch_training.errors import UserError


def eval_pass(dataset: Any, batch_size: int, limit: int | None) -> tuple[int, Iterator[dict]]:
    """(number of batches, iterator over this host's rows) for one validation pass.

    Uses the dataset's own in-order pass (`eval_batches`, padded with zero-weight rows) when it
    has one; otherwise reads `limit` step-indexed batches.
    """
    pi, pc = jax.process_index(), jax.process_count()
    if callable(getattr(dataset, "eval_batches", None)):
        count = int(dataset.num_eval_batches(batch_size))
        if limit is not None:
            count = min(count, limit)
        return count, itertools.islice(dataset.eval_batches(batch_size, pi, pc), count)
    if limit is None:
        raise UserError("evaluation: the validation dataset has no one-pass iterator; "
                        "set TrainerConfig.eval_batches")
    return limit, (dataset.host_batch(i, batch_size, pi, pc) for i in range(limit))


def evaluate(eval_step: Callable[[Any, dict], dict], params: Any, dataset: Any, *, batch_size: int,
             limit: int | None, mesh: Mesh, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """One validation pass (capped at `limit` batches): loss (mean NLL per target token), perplexity."""
    num_batches, batches = eval_pass(dataset, batch_size, limit)
    loss_sum, weight_sum = 0.0, 0.0
    t0 = time.perf_counter()
    pending = []
    for i, host in enumerate(batches):
        pending.append(eval_step(params, sharding_lib.global_batch(host, mesh)))
        if len(pending) > 1:  # keep one batch in flight while reading the previous result
            stats = jax.device_get(pending.pop(0))
            loss_sum += float(stats["loss_sum"])
            weight_sum += float(stats["weight_sum"])
        if log and (i + 1) % max(1, num_batches // 4) == 0:
            rate = (i + 1) / (time.perf_counter() - t0)
            log(f"eval {i + 1}/{num_batches} batches ({rate:.2f} batch/s, "
                f"ETA {(num_batches - i - 1) / rate:.0f}s)")
    for stats in jax.device_get(pending):
        loss_sum += float(stats["loss_sum"])
        weight_sum += float(stats["weight_sum"])
    if weight_sum <= 0:
        raise UserError("evaluation: the validation set produced no target tokens")
    loss = loss_sum / weight_sum
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": weight_sum}
