"""Run by tests/decoding/test_multi_device.py in a process with 8 fake CPU devices: decode and score the same
tiny model on all 8 devices and on one, and print what each gave as one JSON line."""
from __future__ import annotations

import json

import jax
import numpy as np

from evals.backends.jax_backend import JaxModel
from evals.backends.serve_scheduler import Scheduler
from evals.backends.text_vocab import byte_text_vocab
from evals.decode_engine import Row
from evals.sampling import SamplingConfig
from patch_training.model import ModelConfig, init_params

CFG = ModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  max_seq_len=256)
# More prompts than engine rows, of mixed lengths, so rows are refilled mid-run on both layouts (two prefill
# buckets, 16 and 32 tokens, to keep the compiles few).
PROMPTS = [[5, 6, 7], [9] * 11, list(range(3, 30)), [2, 4], [8] * 6, [100, 101, 102, 103], [7] * 20, [1, 2, 3, 4, 5],
           [50] * 3, [60, 61], list(range(200, 230)), [11, 12, 13]]
LIMITS = [12, 5, 9, 16, 3, 7, 10, 4, 14, 6, 8, 11]


def engine_layout(model: JaxModel) -> dict:
    """The server's engine: its row count, the devices its cache lives on after serving a few rows, and
    the greedy tokens it served (3 rows asked: rounded up to a multiple of the device count)."""
    import threading
    scheduler = Scheduler(model, rows=3, context=128, chunk_steps=4)
    try:
        done = threading.Semaphore(0)
        rows = [Row(prompt=p, key=jax.random.key(i), limit=5, sampling=SamplingConfig(), stop_on_eos=False,
                    watch=lambda r: r.done and done.release()) for i, p in enumerate(PROMPTS[:5])]
        scheduler.submit(rows)
        for _ in rows:
            assert done.acquire(timeout=300), "the scheduler did not finish its rows"
        cache = scheduler.call(lambda: scheduler.engine.state["cache"][0][0])
        return {"rows": scheduler.engine.spec.rows, "cache_devices": len(cache.sharding.device_set),
                "cache_shard_rows": cache.addressable_shards[0].data.shape[0],
                "served": [r.token_ids for r in rows]}
    finally:
        scheduler.close()


def run(devices) -> dict:
    params = init_params(CFG, jax.random.key(3))
    model = JaxModel(CFG, params, byte_text_vocab(), batch_size=4, fingerprint="t", devices=devices)
    greedy = model.decoder.generate(PROMPTS, max_new_tokens=LIMITS, stop_tokens=())
    sampled = model.decoder.generate(PROMPTS[:4], max_new_tokens=8, num_samples=2, seed=7, stop_tokens=(),
                                     sampling=SamplingConfig(temperature=1.0, top_k=20))
    scored = model.score([p + [3, 4, 5] for p in PROMPTS], [len(p) for p in PROMPTS], top_k=3)
    return {"devices": 1 if model.mesh is None else model.mesh.size,
            "greedy": [s[0].token_ids for s in greedy],
            "sampled": [[s.token_ids for s in row] for row in sampled],
            "logprobs": [s["logprobs"] for s in scored], "top_ids": [s["top_ids"] for s in scored],
            "engine": engine_layout(model)}


if __name__ == "__main__":
    assert jax.local_device_count() == 8, jax.local_devices()
    one, eight = run(1), run("all")
    print(json.dumps({"one": one, "eight": eight, "max_abs_logprob_diff": float(max(
        np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(one["logprobs"], eight["logprobs"])))}))
