"""Generation cache: every finished (prompt, sample) is appended as it returns, so a killed eval redoes
only what is missing.

    cache_dir/generations.jsonl   one line per finished sample or log-likelihood:
        {"key": K, "kind": "gen", "model": FP, "sample": j, "completion": {...}, "dist": "dists/K.npy"|null}
        {"key": K, "kind": "ll", "model": FP, "value": x}
    cache_dir/dists/K.npy         a sample's mean distribution, written (atomically) before its line

K = sha256 of (model fingerprint, prompt, every Sampling field including the seed, sample index) for a
sample, of (model fingerprint, context, continuation) for a log-likelihood. Greedy and sampled outputs are
both cached; the seed is part of the key. A torn last line (a kill mid-write) is skipped and counted; the
file is only ever appended to, so nothing cached is lost.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from evals.model_api import Completion, LanguageModel, Sampling

log = logging.getLogger(__name__)
CACHE_FILE = "generations.jsonl"


def sample_key(model_fp: str, prompt: str, sampling: Sampling, index: int) -> str:
    blob = json.dumps(["gen", model_fp, prompt, sampling.key(), index], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def ll_key(model_fp: str, context: str, continuation: str) -> str:
    return hashlib.sha256(json.dumps(["ll", model_fp, context, continuation]).encode()).hexdigest()


class GenerationCache:
    """The append-only store (thread-safe appends)."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / CACHE_FILE
        self.entries: dict[str, dict] = {}
        self.torn_lines = 0
        self._lock = threading.Lock()
        if self.path.is_file():
            with self.path.open("rb") as f:
                for raw in f:
                    try:
                        entry = json.loads(raw)
                        self.entries[entry["key"]] = entry
                    except (ValueError, KeyError, TypeError):
                        self.torn_lines += 1
            if self.torn_lines:
                log.warning("%s: skipped %d unreadable line(s) (a run killed mid-write?)", self.path, self.torn_lines)
        self._file = self.path.open("ab")
        if self._file.tell() > 0:  # a torn last line must not glue onto the next record
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, entry: dict, dist: np.ndarray | None = None) -> None:
        with self._lock:
            if dist is not None:
                rel = f"dists/{entry['key']}.npy"
                target = self.dir / rel
                target.parent.mkdir(exist_ok=True)
                tmp = target.with_suffix(".tmp.npy")
                np.save(tmp, np.asarray(dist, np.float32))
                os.replace(tmp, target)
                entry = {**entry, "dist": rel}
            self._file.write((json.dumps(entry) + "\n").encode())
            self._file.flush()
            self.entries[entry["key"]] = entry

    def load_dist(self, entry: dict) -> np.ndarray | None:
        rel = entry.get("dist")
        return np.load(self.dir / rel) if rel else None

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _completion_from(entry: dict, cache: GenerationCache) -> Completion:
    c = entry["completion"]
    return Completion(text=c["text"], token_ids=list(c.get("token_ids", [])),
                      token_logprobs=list(c.get("token_logprobs", [])), finish_reason=c.get("finish_reason", "stop"),
                      mean_dist=cache.load_dist(entry), approximate=bool(c.get("approximate", False)))


class CachedModel:
    """A `LanguageModel` that answers from the cache and asks the wrapped model only for what is missing.

    The wrapped model is asked in chunks of `chunk` prompts (or, when it offers `generate_iter`, one
    prompt at a time as results arrive), and each chunk's samples are on disk before the next is asked.
    """

    def __init__(self, inner: LanguageModel, cache_dir: str | os.PathLike, chunk: int = 8):
        self.inner = inner
        self.cache = GenerationCache(cache_dir)
        self.chunk = max(1, chunk)
        self.hits = 0
        self.misses = 0
        self.progress = False   # log a progress line for every call (the eval CLIs turn it on)

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def __getattr__(self, name: str) -> Any:  # vocab, config, ... of the wrapped backend
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling, *,
                 progress: bool = False) -> list[list[Completion]]:
        fp = self.inner.fingerprint
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        todo: dict[str, list[int]] = {}   # prompt -> indices in `prompts` (duplicates generated once)
        for i, p in enumerate(prompts):
            for j in range(n):
                entry = self.cache.get(sample_key(fp, p, sampling, j))
                if entry is not None:
                    out[i][j] = _completion_from(entry, self.cache)
                    self.hits += 1
            if any(c is None for c in out[i]):
                todo.setdefault(p, []).append(i)
        missing = list(todo)
        self.misses += sum(1 for p in missing for j in range(n) if out[todo[p][0]][j] is None)
        if missing:
            log.info("generation cache %s: %d/%d prompts need the model", self.cache.path, len(missing), len(prompts))
        progress = progress or self.progress
        t0, done, tokens, last = time.monotonic(), 0, 0, 0.0
        for prompt, completions in self._ask(missing, n, sampling):
            for j, c in enumerate(completions):
                key = sample_key(fp, prompt, sampling, j)
                if self.cache.get(key) is None:
                    entry = {"key": key, "kind": "gen", "model": fp, "sample": j, "completion": c.to_json(),
                             "dist": None}
                    self.cache.put(entry, c.mean_dist)
                for i in todo[prompt]:
                    if out[i][j] is None:
                        out[i][j] = c
            done += 1
            tokens += sum(len(c.token_ids) for c in completions)
            now = time.monotonic()
            if progress and (now - last >= 10.0 or done == len(missing)):   # rows arrive a chunk at a time
                last = now
                elapsed = max(now - t0, 1e-9)
                rate = done / elapsed
                log.info("generated %d/%d rows, %.1f tokens/s (%.3f rows/s, ETA %.0fs)", done, len(missing),
                         tokens / elapsed, rate, (len(missing) - done) / max(rate, 1e-9))
        return [list(row) for row in out]  # type: ignore[arg-type]

    def _ask(self, prompts: list[str], n: int, sampling: Sampling) -> Iterator[tuple[str, list[Completion]]]:
        gen_iter = getattr(self.inner, "generate_iter", None)
        if gen_iter is not None:
            for i, completions in gen_iter(prompts, n, sampling):
                yield prompts[i], completions
            return
        for b0 in range(0, len(prompts), self.chunk):
            chunk = prompts[b0:b0 + self.chunk]
            for p, completions in zip(chunk, self.inner.generate(chunk, n, sampling)):
                yield p, completions

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        fp = self.inner.fingerprint
        out: list[float | None] = []
        missing = []
        for k, (ctx, cont) in enumerate(requests):
            entry = self.cache.get(ll_key(fp, ctx, cont))
            out.append(None if entry is None else float(entry["value"]))
            if entry is None:
                missing.append(k)
        for b0 in range(0, len(missing), self.chunk):
            idx = missing[b0:b0 + self.chunk]
            values = self.inner.loglikelihood([requests[k] for k in idx])
            for k, v in zip(idx, values):
                self.cache.put({"key": ll_key(fp, *requests[k]), "kind": "ll", "model": fp, "value": float(v)})
                out[k] = float(v)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.cache.close()
