"""The server's one decode loop: a scheduler thread owns the model and a continuous-batching engine.

Request handlers never touch the model. They `submit` rows (one per sample) and wait on them; the
scheduler thread moves submitted rows into the engine between chunks, so rows of different requests
decode in the same batch, each with its own sampling settings (`EngineSpec.sampling=None`). Scoring
passes (echo log-probs, top-k alternatives) are `call`ed: they run on the same thread between chunks,
so one thread at a time computes on the device and nothing races for the cores.

Backpressure: at most `max_waiting` rows may wait for an engine row; a submit beyond that raises
`QueueFull` (the server answers 429 with Retry-After) instead of queueing work nobody can wait for.
Cancellation: `cancel(rows)` flags rows; the engine drops them at its next step, waiting or decoding.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Any, Callable, Sequence

from evals import decode_mesh
from evals.decode_engine import Engine, EngineSpec, Row

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More rows are waiting than the server accepts; `retry_after_s` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SchedulerFailed(RuntimeError):
    """The engine raised; every row in flight ends with this error."""


class Scheduler:
    """Owns `model` (a JaxModel) on one thread; see the module docstring."""

    def __init__(self, model: Any, *, rows: int, context: int, chunk_steps: int = 16, max_waiting: int = 256,
                 max_logprobs: int = 20):
        self.model = model
        self.context = int(context)
        self.max_waiting = int(max_waiting)
        mesh = model.decoder.mesh   # the model's local devices: rows split evenly over them
        spec = EngineSpec(config=model.config, sampling=None, rows=decode_mesh.round_rows(rows, mesh),
                          cache_len=self.context, max_new_tokens=self.context, stop_tokens=tuple(model.stop_ids()),
                          return_probs=False, compute_dtype=model.decoder.compute_dtype,
                          cache_dtype=model.decoder.cache_dtype, mesh=mesh, top_logprobs=int(max_logprobs))
        self.engine = Engine(model.decoder.engine_weights(), spec, chunk_steps=chunk_steps)
        self._lock = threading.Condition()
        self._inbox: list[Row] = []
        self._jobs: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._closed = False
        self.error: BaseException | None = None
        self.tokens_out = 0
        self.rows_done = 0
        self.peak_live = 0      # most rows decoding in one chunk since the last reset_peak()
        self._thread = threading.Thread(target=self._loop, name="serve-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ handler side
    def submit(self, rows: Sequence[Row]) -> None:
        """Queue rows for decoding (their `watch` is called on the scheduler thread as they grow and end)."""
        with self._lock:
            if self.error is not None:
                raise SchedulerFailed(f"the decode loop stopped: {self.error}")
            waiting = len(self._inbox) + self.engine.waiting
            if waiting + len(rows) > self.max_waiting:
                raise QueueFull(f"server busy: {waiting} samples already wait for a decode row "
                                f"(limit {self.max_waiting}); retry later", self._retry_after(waiting))
            self._inbox.extend(rows)
            self._lock.notify()

    def cancel(self, rows: Sequence[Row]) -> None:
        for row in rows:
            if not row.done:
                Engine.cancel(row)
        with self._lock:
            self._lock.notify()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn() on the scheduler thread (between decode chunks) and return its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.error is not None:
                raise SchedulerFailed(f"the decode loop stopped: {self.error}")
            self._jobs.append((fn, future))
            self._lock.notify()
        return future.result()

    def stats(self) -> dict[str, int]:
        return {"rows": self.engine.spec.rows, "live_rows": self.engine.live,
                "waiting_rows": len(self._inbox) + self.engine.waiting, "max_waiting": self.max_waiting,
                "context": self.context, "cancelled_rows": self.engine.stats.get("cancelled", 0),
                "finished_rows": self.rows_done, "generated_tokens": self.tokens_out,
                "peak_live_rows": self.peak_live}

    def reset_peak(self) -> None:
        self.peak_live = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=30)

    def _retry_after(self, waiting: int) -> int:
        # Roughly how long until the rows ahead have been placed: a few seconds per engine's worth of rows.
        return max(1, min(60, waiting // max(1, self.engine.spec.rows)))

    # ------------------------------------------------------------------ scheduler thread
    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._closed or self._inbox or self._jobs or self.engine.busy):
                    self._lock.wait()
                if self._closed:
                    return
                inbox, self._inbox = self._inbox, []
                jobs, self._jobs = self._jobs, []
            for fn, future in jobs:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                        future.set_exception(e)
            for row in inbox:
                self.engine.submit(row)
            if not self.engine.busy:
                continue
            try:
                t0 = time.monotonic()
                finished = self.engine.step()
                self.peak_live = max(self.peak_live, self.engine.live + len(finished))
            except BaseException as e:  # noqa: BLE001 - the rows in flight must end, not hang
                log.exception("the decode loop failed")
                self._fail(e)
                return
            for row in finished:
                self.rows_done += 1
                self.tokens_out += len(row.token_ids)
            log.debug("chunk in %.3fs: %d live, %d waiting", time.monotonic() - t0, self.engine.live,
                      self.engine.waiting)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self.error = error
            rows = list(self.engine.pending) + [r for r in self.engine.occupant if r is not None] + self._inbox
            jobs, self._jobs = self._jobs, []
        for row in rows:
            row.done = True
            if row.watch is not None:
                row.watch(row)
        for _, future in jobs:
            future.set_exception(SchedulerFailed(f"the decode loop stopped: {error}"))
