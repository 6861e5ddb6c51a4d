"""The sandbox's wire protocol, in one place: frames, limits, statuses and message kinds.

Standard library only, and no package-relative imports: the zygote imports this file as a top-level
module (`import protocol`; its directory is `sys.path[0]` when `python -s -B zygote.py` starts inside the
sandbox, where neither `evals/__init__` nor any third-party package is reachable), while the harness
imports it as `evals.execution.protocol`.

Harness <-> zygote (the zygote's private fds 200/201; see zygote.main):
    frame   = 4-byte big-endian length + that many bytes of JSON (at most MAX_FRAME)
    zygote: {"ready": true, "pid", "uid", "python"}            once, when it is ready for work
    harness: {"tasks": [task, ...]}                              a batch (see `task_wire`)
    zygote: {"id", "calls": [call, ...], "script"?: {...}}       one frame per task, in order
            {"id", "zygote_error": "..."}                       a zygote bug, never a program's verdict
    call   = {"status": one of STATUSES, "output": repr as a JSON string | None, "exc": str | None, "note"?}

Forked child -> zygote (one pipe, the child's fd RESULT_FD): one JSON object per line,
    {"loaded": true}                                             the program's top level finished
    {"i": k, "kind": one of CALL_KINDS, "value", "exc"}          call k (in order, from the first unanswered)
    {"load_error": ..., "exc", "note"?}                          the program (or its examples) failed to load
    {"fatal": "..."}                                             the examples disagree with the task's call count
    {"script_exit": code, "exc"?, "value"?}                      script mode: how the script ended
The child encodes its lines with `json.dumps` bound before the candidate runs (zygote._child_reporters),
not with a helper from here: a candidate may patch `json` and this module's globals in its own process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import struct

# ---------------------------------------------------------------- frames (harness <-> zygote)
FRAME_HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20


class FrameError(ValueError):
    """A frame that is too large or not JSON: the sender is broken or hostile."""


def encode_frame(obj) -> bytes:
    """The receiver enforces MAX_FRAME (an oversized frame means a broken sender, handled on its side)."""
    data = json.dumps(obj).encode()
    return FRAME_HEADER.pack(len(data)) + data


def read_frame(read_exact):
    """Read one frame through `read_exact(n) -> bytes | None` (None: the pipe closed before n bytes).
    -> the decoded object, or None at end of stream; raises FrameError for an oversized or malformed one."""
    head = read_exact(FRAME_HEADER.size)
    if head is None:
        return None
    (n,) = FRAME_HEADER.unpack(head)
    if n > MAX_FRAME:
        raise FrameError("oversized frame")
    body = read_exact(n)
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise FrameError("malformed frame") from None


# Keys of the zygote's frames that the harness acts on.
READY, TASKS, ZYGOTE_ERROR = "ready", "tasks", "zygote_error"

# ---------------------------------------------------------------- child -> zygote lines
RESULT_FD = 3  # the forked child's only open fd besides stdio: its result pipe
LOADED, LOAD_ERROR, FATAL, SCRIPT_EXIT = "loaded", "load_error", "fatal", "script_exit"
KIND_RETURN, KIND_ERROR, KIND_TOO_LARGE, KIND_BAD_INPUT = "return", "error", "too_large", "bad_input"
CALL_KINDS = (KIND_RETURN, KIND_ERROR, KIND_TOO_LARGE, KIND_BAD_INPUT)


def decode_line(line: bytes) -> dict:
    """One child result line -> a dict; raises ValueError for anything else."""
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("result line is not a JSON object")
    return msg


# ---------------------------------------------------------------- statuses
OK, ERROR, TIMEOUT, MEMORY, CRASH = "ok", "error", "timeout", "memory", "crash"
OUTPUT_TOO_LARGE, PROTOCOL_ERROR, WORKER_DIED = "output_too_large", "protocol_error", "worker_died"
STATUSES = (OK, ERROR, TIMEOUT, MEMORY, CRASH, OUTPUT_TOO_LARGE, PROTOCOL_ERROR, WORKER_DIED)
# A program's status is the worst of its calls' (and its script's), in this order.
SEVERITY = (WORKER_DIED, PROTOCOL_ERROR, CRASH, MEMORY, TIMEOUT, OUTPUT_TOO_LARGE, ERROR, OK)


def worst_status(statuses) -> str:
    present = set(statuses)
    for s in SEVERITY:
        if s in present:
            return s
    return OK


# ---------------------------------------------------------------- limits (defaults: ../shared/SANDBOX.md §3)
@dataclasses.dataclass(frozen=True)
class Limits:
    """What one program may use. `wall_s` is per call; the CPU rlimit is derived from it."""

    wall_s: float = 2.0              # per call, wall clock (the zygote's deadline)
    load_wall_s: float | None = None  # module top level; defaults to wall_s
    program_wall_s: float = 30.0      # all calls of one program together
    memory_bytes: int = 1 << 30       # RLIMIT_AS (numpy needs more than stdlib-only code)
    fsize_bytes: int = 16 << 20       # RLIMIT_FSIZE
    nofile: int = 64
    nproc: int | None = 1             # 1 = no threads and no forks
    output_cap: int = 64 << 10        # one call's canonical output
    task_output_cap: int = 8 << 20    # all of a program's result lines
    stdout_cap: int = 1 << 20         # script mode: captured stdout

    def to_wire(self) -> dict:
        """The dict the zygote reads: every field, `load_wall_s` resolved, plus the CPU seconds per call."""
        d = dataclasses.asdict(self)
        d["load_wall_s"] = self.load_wall_s if self.load_wall_s is not None else self.wall_s
        d["cpu_s"] = max(1, math.ceil(self.wall_s))
        return d

    def task_budget_s(self, n_calls: int) -> float:
        """The most a well-behaved zygote can take for this program (the harness adds its grace)."""
        load = self.load_wall_s if self.load_wall_s is not None else self.wall_s
        return min(self.program_wall_s, load + n_calls * self.wall_s) + 0.5 * (1 + n_calls // 8)


# ---------------------------------------------------------------- tasks (harness -> zygote)
MODES = ("calls", "script")


def task_wire(task_id: str, source: str, entry: str, calls: list[dict], *, limits: Limits, n_calls: int,
              calls_src: str | list[str] | None = None, mode: str = "calls", compat: str | None = None) -> dict:
    """One task as the zygote reads it. `calls` hold only `{"kwargs": ...}` or `{"kwargs_src": str}`."""
    return {"id": task_id, "source": source, "entry": entry, "calls": calls, "calls_src": calls_src,
            "n_calls": int(n_calls), "mode": mode, "limits": limits.to_wire(), "compat": compat}
