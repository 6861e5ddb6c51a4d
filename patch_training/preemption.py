"""Preemption: notice SIGTERM, agree across hosts on one step, let the loop save and exit cleanly.

Single process: a SIGTERM (or SIGINT if asked) handler only sets a flag; the training loop polls
`should_stop(step)` once per step, saves a final checkpoint and returns normally.

Multi-process: every host must stop at the *same* step or the collective save deadlocks. When the
JAX distributed runtime runs its preemption service (the default), its C++ notifier owns SIGTERM and
`reached_preemption_sync_point(step)` returns True on all hosts at one agreed step; we then do not
install a Python handler (it would replace the notifier). Without the service, each host sets its own
flag and the flags are OR-ed across hosts every `sync_every_steps` steps, a step number every host
visits.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Iterable

import jax

from patch_training import multihost

log = logging.getLogger(__name__)


def _preemption_service_available() -> bool:
    if jax.process_count() == 1:
        return False
    from jax._src import distributed
    return distributed.global_state.preemption_sync_manager is not None


class PreemptionWatcher:
    """Context manager; `should_stop(step)` says when the loop should save and leave.

    Restores the previous signal handlers on exit. Handlers can only be installed from the main
    thread; elsewhere the watcher still works through `request_stop()` and the JAX service.
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM,), *, sync_every_steps: int = 10,
                 use_jax_service: bool | None = None):
        self.signals = tuple(signals)
        self.sync_every_steps = max(1, int(sync_every_steps))
        self._use_service = use_jax_service
        self._event = threading.Event()
        self._previous: dict[int, object] = {}
        self.received_signal: int | None = None
        self.stopped_at_step: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "PreemptionWatcher":
        if self._use_service is None:
            self._use_service = _preemption_service_available()
        if self._use_service:
            log.info("preemption: using the JAX distributed preemption service")
            return self
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        else:
            log.warning("preemption: not on the main thread; signal handlers not installed")
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: saving from inside a signal handler would race the training step.
        self.received_signal = signum
        self._event.set()

    # -- queries -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask for a stop as a signal would (tests, or other in-process triggers)."""
        self._event.set()

    @property
    def signalled(self) -> bool:
        """This host saw a signal (or `request_stop`); not yet agreed with other hosts."""
        return self._event.is_set()

    def should_stop(self, step: int) -> bool:
        """Call once per step on every process; True means: save now at `step`, then exit."""
        if self.stopped_at_step is not None:
            return True
        if self._use_service:
            from jax.experimental import multihost_utils
            stop = multihost_utils.reached_preemption_sync_point(step) or self._agreed_flag(step)
        else:
            stop = self._agreed_flag(step)
        if stop:
            self.stopped_at_step = step
            log.warning("preemption: stopping at step %d (signal %s)", step, self.received_signal)
        return stop

    def _agreed_flag(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self._event.is_set()
        if step % self.sync_every_steps:
            return False
        return multihost.any_process(self._event.is_set())
