"""The public API: a pool of pre-forked sandboxed workers that streams results for many programs.

    with SandboxPool() as pool:                       # probes the tier once, starts one zygote per core
        for res in pool.run(programs, journal="runs/x/exec.jsonl"):
            ...                                       # ProgramResult, in completion order

Start the pool *before* loading gold data: worker restarts fork+exec immediately, but the zygotes themselves
are separate interpreters that never see the harness's memory.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from typing import Iterable, Iterator

from evals.execution import protocol
from evals.execution.journal import Journal
from evals.execution.protocol import PROTOCOL_ERROR, WORKER_DIED, Limits
from evals.execution.probe import resolve_tier
from evals.execution.worker import Worker, validate_calls
from patch_training.errors import UserError

log = logging.getLogger(__name__)
MAX_HASH_SEED = 4294967295  # the largest PYTHONHASHSEED the interpreter accepts


@dataclasses.dataclass
class Program:
    """One untrusted program. Calls are `{"kwargs": {...}}` or `{"kwargs_src": "dict(...)"}`, or give
    `calls_src` (source that defines `examples`, a list of kwargs dicts; Case2Code's `example_str`) with
    `n_calls`; it runs after the program, in the program's namespace. A list of sources means generation
    rounds, each run in a fresh namespace with the program loaded anew (see `case2code.split_rounds`).
    `compat="case2code"` reproduces the environment a reference's outputs were recorded in (case2code.py).
    `mode="script"` runs the source as a script and captures stdout instead."""

    task_id: str
    source: str
    entry: str | None = None
    calls: list = dataclasses.field(default_factory=list)
    calls_src: str | list[str] | None = None
    n_calls: int | None = None
    mode: str = "calls"
    limits: Limits | None = None
    attempt: int = 0
    worker: int | None = None  # pin to worker `worker % num_workers` (e.g. run-twice); None = any
    compat: str | None = None

    def wire(self, default: Limits) -> dict:
        lim = self.limits or default
        n = self.n_calls if self.calls_src is not None else len(self.calls)
        if self.mode == "script":
            n = 0
        calls = []
        for c in self.calls:  # only the two known keys travel; anything else stays in the parent
            if isinstance(c, dict) and "kwargs_src" in c and isinstance(c["kwargs_src"], str):
                calls.append({"kwargs_src": c["kwargs_src"]})
            elif isinstance(c, dict):
                calls.append({"kwargs": c.get("kwargs")})
            else:
                calls.append({"kwargs": None})
        return protocol.task_wire(f"{self.task_id}#{self.attempt}", self.source, self.entry or "", calls,
                                  limits=lim, n_calls=int(n or 0), calls_src=self.calls_src, mode=self.mode,
                                  compat=self.compat)


@dataclasses.dataclass
class ProgramResult:
    task_id: str
    attempt: int
    status: str
    calls: list[dict]
    script: dict | None = None
    worker: int | None = None
    wall_s: float = 0.0
    from_journal: bool = False

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("from_journal")
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ProgramResult":
        return cls(**{k: d.get(k) for k in ("task_id", "attempt", "status", "calls", "script", "worker",
                                            "wall_s")}, from_journal=True)


def program_status(calls: list[dict], script: dict | None) -> str:
    statuses = [c["status"] for c in calls] + ([script["status"]] if script is not None else [])
    return protocol.worst_status(statuses)


def _script_from_frame(frame: dict) -> dict | None:
    s = frame.get("script")
    if not isinstance(s, dict):
        return None
    out = s.get("stdout") if isinstance(s.get("stdout"), str) else ""
    return {"status": s.get("status") if s.get("status") in protocol.STATUSES else PROTOCOL_ERROR,
            "exit": s.get("exit") if isinstance(s.get("exit"), int) else None,
            "exc": s.get("exc") if isinstance(s.get("exc"), str) else None,
            "error": s.get("error") if isinstance(s.get("error"), str) else None,
            "stdout": out, "stdout_truncated": bool(s.get("stdout_truncated"))}


def _checked_hash_seed(seed: int | None) -> int:
    if seed is None:
        return 0
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_HASH_SEED:
        raise UserError(f"SandboxPool(hash_seed={seed!r}): expected an int in [0, {MAX_HASH_SEED}] or None")
    return seed


class _Jobs:
    """Work shared by the worker threads: each takes the oldest job that is unpinned or pinned to it."""

    def __init__(self):
        self._jobs: list = []
        self._cv = threading.Condition()

    def put(self, job, worker: int | None = None) -> None:
        with self._cv:
            self._jobs.append((worker, job))
            self._cv.notify_all()

    def get(self, worker: int):
        with self._cv:
            while True:
                for k, (pin, job) in enumerate(self._jobs):
                    if pin is None or pin == worker:
                        del self._jobs[k]
                        return job
                self._cv.wait()


class SandboxPool:
    """N pre-forked zygotes (default: one per core), each driven by its own harness thread.

    `hash_seed`: the PYTHONHASHSEED of every interpreter of this pool, restarts included (None: 0). Two pools
    with different seeds order sets of strings differently, which is what the run-twice rule needs to catch
    output that depends on it."""

    def __init__(self, num_workers: int | None = None, *, tier: str | None = None,
                 limits: Limits | None = None, batch_size: int = 16, hash_seed: int | None = None):
        self.hash_seed = _checked_hash_seed(hash_seed)
        # A named tier (or $EXECUTOR_TIER) must pass its own probe; T3 needs EXECUTOR_ALLOW_WEAK=1.
        self.tier_info = resolve_tier(tier)
        self.tier = self.tier_info["tier"]
        self.limits = limits or Limits()
        self.batch_size = batch_size
        n = num_workers or len(os.sched_getaffinity(0))
        self.workers = [Worker(self.tier, i, hash_seed=self.hash_seed) for i in range(n)]
        self._inbox = _Jobs()
        self._started = threading.Barrier(n + 1)
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._drive, args=(w,), daemon=True, name=f"sbx-{w.index}")
                         for w in self.workers]
        for t in self._threads:
            t.start()
        self._started.wait()
        if self._errors:
            self.close()
            raise self._errors[0]
        log.info("sandbox pool: %d workers at tier %s, hash seed %d", n, self.tier, self.hash_seed)

    # Each worker is started and restarted by the same long-lived thread: bwrap's --die-with-parent
    # follows the thread that spawned it.
    def _drive(self, worker: Worker) -> None:
        try:
            worker.start()
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._errors.append(e)
        self._started.wait()
        while True:
            job = self._inbox.get(worker.index)
            if job is None:
                worker.stop()
                return
            if isinstance(job, threading.Event):  # restart_worker(): a fresh zygote, then signal
                try:
                    worker.restart()
                finally:
                    job.set()
                continue
            programs, out = job
            wires = [p.wire(self.limits) for p in programs]
            budgets = [(p.limits or self.limits).task_budget_s(w["n_calls"]) for p, w in zip(programs, wires)]
            t0 = time.monotonic()
            try:
                for i, frame in worker.run_batch(wires, budgets):
                    out.put(self._result(programs[i], wires[i], frame, worker.index, time.monotonic() - t0))
                    t0 = time.monotonic()
            except BaseException as e:  # noqa: BLE001 - e.g. a restart that failed: report, don't hang
                out.put(e)

    def _result(self, p: Program, wire: dict, frame: dict | None, worker: int, wall: float) -> ProgramResult:
        n = wire["n_calls"]
        lim = p.limits or self.limits
        script = None
        if frame is None:
            calls = [{"status": WORKER_DIED, "output": None, "exc": None, "note": "sandbox worker restarted"}
                     for _ in range(n)]
            if p.mode == "script":
                script = {"status": WORKER_DIED, "exit": None, "exc": None, "error": None, "stdout": "",
                          "stdout_truncated": False}
        else:
            calls = validate_calls(frame, n, lim) if protocol.ZYGOTE_ERROR not in frame else None
            if calls is None:
                calls = [{"status": PROTOCOL_ERROR, "output": None, "exc": None,
                          "note": "invalid result frame"} for _ in range(n)]
            if p.mode == "script":
                script = _script_from_frame(frame) or {"status": PROTOCOL_ERROR, "exit": None, "exc": None,
                                                       "error": None, "stdout": "", "stdout_truncated": False}
        return ProgramResult(p.task_id, p.attempt, program_status(calls, script), calls, script, worker, wall)

    # ------------------------------------------------------------ public
    def run(self, programs: Iterable[Program], *, journal: str | os.PathLike | None = None,
            progress_every: float = 10.0) -> Iterator[ProgramResult]:
        """Stream results in completion order. With a journal, finished programs are skipped (and yielded
        from the journal) and new ones are appended as they finish."""
        jr = Journal(journal) if journal is not None else None
        out: queue.Queue = queue.Queue()
        in_flight = 0
        done = 0
        t_start = last_log = time.monotonic()
        it = iter(programs)
        exhausted = False
        try:
            while True:
                # Keep about two batches per worker queued; programs are pulled lazily from the iterable.
                while not exhausted and in_flight < 2 * len(self.workers) * self.batch_size:
                    batch = []
                    for p in it:
                        if jr is not None and jr.has(p.task_id, p.attempt):
                            yield ProgramResult.from_json(jr.done[(str(p.task_id), p.attempt)])
                            continue
                        batch.append(p)
                        if len(batch) >= self.batch_size:
                            break
                    else:
                        exhausted = True
                    groups: dict = {}  # pinned programs travel only in batches for their worker
                    for p in batch:
                        pin = None if p.worker is None else p.worker % len(self.workers)
                        groups.setdefault(pin, []).append(p)
                    for pin, group in groups.items():
                        self._inbox.put((group, out), pin)
                        in_flight += len(group)
                if in_flight == 0:
                    return
                res = out.get()
                if isinstance(res, BaseException):
                    raise res
                in_flight -= 1
                done += 1
                if jr is not None:
                    jr.record(dict(res.to_json()))
                    if out.empty():
                        jr.flush()
                now = time.monotonic()
                if progress_every and now - last_log > progress_every:
                    rate = done / (now - t_start)
                    log.info("sandbox: %d programs done, %.0f/s, %d in flight", done, rate, in_flight)
                    last_log = now
                yield res
        finally:
            if jr is not None:
                jr.close()

    def restart_worker(self, index: int) -> None:
        """Replace worker `index`'s zygote with a fresh one (done by its own thread; blocks until done)."""
        done = threading.Event()
        self._inbox.put(done, index % len(self.workers))
        done.wait()

    def run_one(self, program: Program) -> ProgramResult:
        return next(iter(self.run([program])))

    def close(self) -> None:
        for w in self.workers:
            self._inbox.put(None, w.index)
        for t in self._threads:
            t.join(timeout=10)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
