"""Harness side of one zygote: start it, feed it task batches, read its frames with a backstop deadline.

The harness never unpickles or evals anything from here: frames are length-prefixed JSON with a size cap,
and every field is type-checked before it becomes a result. If the zygote misses its deadline or its frame is
malformed, the whole sandbox process group is killed and restarted, and only the program it was working on is
marked `worker_died`.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time

from evals.execution import protocol
from evals.execution.launch import Launch, launch_for
from evals.execution.protocol import Limits

GRACE_S = 1.0
START_TIMEOUT_S = 30.0


class WorkerDied(Exception):
    pass


class Worker:
    """One long-lived sandboxed zygote. Not thread-safe: one thread drives one worker."""

    def __init__(self, tier: str, index: int, *, seccomp: bool = True, hash_seed: int = 0):
        self.tier, self.index, self.seccomp, self.hash_seed = tier, index, seccomp, hash_seed
        self.proc: subprocess.Popen | None = None
        self.launch: Launch | None = None
        self.info: dict = {}
        self.restarts = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.launch = launch_for(self.tier, self.index, seccomp=self.seccomp, hash_seed=self.hash_seed)
        self.proc = subprocess.Popen(self.launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=self.launch.env, cwd=self.launch.cwd,
                                     close_fds=True, start_new_session=True)
        hello = self._read_frame(time.monotonic() + START_TIMEOUT_S)
        if not isinstance(hello, dict) or not hello.get(protocol.READY):
            self.stop()
            raise WorkerDied(f"zygote {self.index} ({self.tier}) did not start: {hello!r}"[:300])
        self.info = hello

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if self.launch is not None:
            self.launch.cleanup()
            self.launch = None

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    # ------------------------------------------------------------ framing
    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied("zygote missed its deadline")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise WorkerDied("zygote closed its pipe")
            buf += chunk
        return bytes(buf)

    def _read_frame(self, deadline: float):
        try:
            return protocol.read_frame(lambda n: self._read_exact(n, deadline))
        except protocol.FrameError as e:
            raise WorkerDied(str(e)) from None

    def _send(self, obj) -> None:
        data = protocol.encode_frame(obj)
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"cannot write to zygote: {e}") from None

    # ------------------------------------------------------------ running
    def run_batch(self, wires: list[dict], budgets: list[float]):
        """Yield (index, frame | None) per task in order; None means the worker died on that task."""
        pending = list(range(len(wires)))
        while pending:
            if self.proc is None:
                self.start()
            try:
                self._send({protocol.TASKS: [wires[i] for i in pending]})
            except WorkerDied:
                self.restart()
                self._send({protocol.TASKS: [wires[i] for i in pending]})
            while pending:
                i = pending[0]
                try:
                    frame = self._read_frame(time.monotonic() + budgets[i] + GRACE_S)
                    if not isinstance(frame, dict) or frame.get("id") != wires[i]["id"]:
                        raise WorkerDied("frame for the wrong task")
                except WorkerDied:
                    pending.pop(0)
                    yield i, None
                    self.restart()
                    break  # resend what is left to the fresh zygote
                pending.pop(0)
                yield i, frame


def validate_calls(frame: dict, n_calls: int, limits: Limits) -> list[dict] | None:
    """The parent's check of a zygote frame: right count, known statuses, bounded strings."""
    calls = frame.get("calls")
    if not isinstance(calls, list) or len(calls) != n_calls:
        return None
    out = []
    for c in calls:
        if not isinstance(c, dict) or c.get("status") not in protocol.STATUSES:
            return None
        output, exc, note = c.get("output"), c.get("exc"), c.get("note")
        if output is not None and (not isinstance(output, str) or len(output) > limits.output_cap + 64):
            return None
        if exc is not None and (not isinstance(exc, str) or len(exc) > 200):
            exc = None
        if note is not None and not isinstance(note, str):
            note = None
        out.append({"status": c["status"], "output": output, "exc": exc, "note": note})
    return out
