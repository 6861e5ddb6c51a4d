"""Start-up probe: pick the strongest isolation tier that actually works here, and prove it.

Each candidate tier is tested by running a probe program through a real zygote of that tier. The parent
judges the facts the program reports against things only the parent can see (a loopback listener it opened).
The result is cached per process and logged. Without isolation the probe refuses unless the user opted in
with EXECUTOR_ALLOW_WEAK=1 (then T3).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time

from evals.execution import protocol
from evals.execution.canonical import _literal
from evals.execution.protocol import Limits
from evals.execution.worker import Worker, validate_calls
from patch_training.errors import UserError

log = logging.getLogger(__name__)
ALLOW_WEAK_ENV = "EXECUTOR_ALLOW_WEAK"
TIER_ENV = "EXECUTOR_TIER"  # force a tier ("T1"|"T2"|"T3"); it must pass its probe (T3: must be opted in)
TIERS = ("T1", "T2", "T3")
_CACHE: dict | None = None
_FORCED: dict[str, dict] = {}

PROBE_SOURCE = '''
import os, socket
def probe(port):
    facts = {"uid": os.getuid(), "pid": os.getpid()}
    forks = 0
    for _ in range(5):                      # bounded: NPROC=1 must stop every one of these
        try:
            pid = os.fork()
        except OSError:
            continue
        if pid == 0:
            os._exit(0)
        forks += 1
        os.waitpid(pid, 0)
    facts["forks"] = forks
    wrote = []
    for path in ("/usr/sbx_probe_canary", "/etc/sbx_probe_canary"):
        try:
            open(path, "w").close()
            wrote.append(path)
        except OSError:
            pass
    facts["wrote_outside"] = wrote
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        facts["connected"] = True
    except OSError:
        facts["connected"] = False
    try:
        os.kill(1, 0)
        facts["can_signal_pid1"] = True
    except OSError:
        facts["can_signal_pid1"] = False
    facts["secret_env"] = sorted(k for k in os.environ if "SECRET" in k or "TOKEN" in k)
    return facts
'''


class SandboxUnavailable(UserError):
    """No isolation tier is available and weak execution was not opted into."""


def _try_tier(tier: str) -> tuple[bool, dict]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    w = Worker(tier, index=90)
    facts: dict = {"tier": tier}
    try:
        w.start()
        lim = Limits(wall_s=5.0)
        wire = protocol.task_wire("probe#0", PROBE_SOURCE, "probe", [{"kwargs": {"port": port}}], limits=lim,
                                  n_calls=1)
        frame = next(w.run_batch([wire], [lim.task_budget_s(1)]))[1]
        calls = validate_calls(frame or {}, 1, lim)
        if not calls or calls[0]["status"] != protocol.OK:
            return False, dict(facts, reason=f"probe program failed: {calls or frame}"[:300])
        facts.update(_literal(json.loads(calls[0]["output"])))
    except Exception as e:  # noqa: BLE001 - any failure means "this tier is not available"
        return False, dict(facts, reason=f"{type(e).__name__}: {e}"[:300])
    finally:
        w.stop()
    try:
        listener.accept()
        facts["listener_saw_connection"] = True
    except BlockingIOError:
        facts["listener_saw_connection"] = False
    listener.close()
    problems = []
    if facts.get("uid") == 0:
        problems.append("sandbox runs as uid 0")
    if facts.get("forks"):
        problems.append("RLIMIT_NPROC not enforced")
    if facts.get("wrote_outside"):
        problems.append("could write outside the sandbox")
    if facts.get("connected") or facts["listener_saw_connection"]:
        problems.append("reached a loopback listener")
    if facts.get("can_signal_pid1"):
        problems.append("could signal pid 1")
    if facts.get("secret_env"):
        problems.append("harness environment leaked")
    if problems:
        return False, dict(facts, reason="; ".join(problems))
    return True, facts


def _weak_allowed() -> bool:
    return os.environ.get(ALLOW_WEAK_ENV) == "1"


def require_tier(tier: str, *, refresh: bool = False) -> dict:
    """A tier asked for by name: proven by its own probe, never swapped for another. T3 (rlimits only, as
    the harness's own user) is refused unless EXECUTOR_ALLOW_WEAK=1."""
    if tier not in TIERS:
        raise SandboxUnavailable(f"unknown sandbox tier {tier!r} (expected one of {', '.join(TIERS)})")
    if tier == "T3":
        if not _weak_allowed():
            raise SandboxUnavailable(f"tier T3 runs untrusted code with rlimits only, as your own user; "
                                     f"set {ALLOW_WEAK_ENV}=1 to accept that")
        log.warning("sandbox tier T3 forced (weak, opted in via %s=1)", ALLOW_WEAK_ENV)
        return {"tier": "T3", "checks": {}, "tried": [], "forced": True}
    if tier in _FORCED and not refresh:
        return _FORCED[tier]
    t0 = time.monotonic()
    ok, facts = _try_tier(tier)
    if not ok:
        raise SandboxUnavailable(f"sandbox tier {tier} was requested but failed its probe: {facts.get('reason')}")
    info = {"tier": tier, "checks": facts, "tried": [facts], "forced": True,
            "probe_s": round(time.monotonic() - t0, 3)}
    (log.info if tier == "T1" else log.warning)("sandbox tier %s forced (%s)", tier, info)
    _FORCED[tier] = info
    return info


def resolve_tier(requested: str | None = None) -> dict:
    """The tier a pool should use: `requested`, else $EXECUTOR_TIER, else the strongest one that works."""
    want = requested or os.environ.get(TIER_ENV) or None
    return require_tier(want) if want else probe_tier()


def probe_tier(*, refresh: bool = False) -> dict:
    """-> {"tier": "T1"|"T2"|"T3", "checks": {...}, "tried": [...]}; raises SandboxUnavailable."""
    global _CACHE
    if _CACHE is not None and not refresh:
        return _CACHE
    t0 = time.monotonic()
    tried = []
    candidates = []
    if shutil.which("bwrap"):
        candidates.append("T1")
    if os.geteuid() == 0:
        candidates.append("T2")
    for tier in candidates:
        ok, facts = _try_tier(tier)
        tried.append(facts)
        if ok:
            _CACHE = {"tier": tier, "checks": facts, "tried": tried, "probe_s": round(time.monotonic() - t0, 3)}
            (log.info if tier == "T1" else log.warning)("sandbox tier %s (%s)", tier, _CACHE)
            return _CACHE
    if _weak_allowed():
        _CACHE = {"tier": "T3", "checks": {}, "tried": tried, "probe_s": round(time.monotonic() - t0, 3),
                  "warning": "rlimits only: the program runs as your own user"}
        log.warning("sandbox tier T3 (weak, opted in via %s=1)", ALLOW_WEAK_ENV)
        return _CACHE
    reasons = "; ".join(f"{f['tier']}: {f.get('reason')}" for f in tried) or "no bwrap and not root"
    raise SandboxUnavailable(f"no sandbox isolation available ({reasons}); install bubblewrap, run as root "
                             f"for T2, or set {ALLOW_WEAK_ENV}=1 to accept rlimits-only execution")
