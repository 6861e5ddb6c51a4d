"""Tier selection: T2 (no namespaces: setuid + rlimits + seccomp) contains the dangerous programs when
forced, T3 is refused unless opted into, and the run-twice rule puts its attempts on different workers."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from evals.execution import Limits, Program, SandboxPool, SandboxUnavailable
from evals.execution.launch import SANDBOX_UID_BASE, SANDBOX_UID_COUNT, UidLease
from evals.execution.probe import ALLOW_WEAK_ENV, TIER_ENV, require_tier
from tests.execution.test_adversarial import err_of, host, run_contained, statuses  # noqa: F401 (fixture)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="tier T2 drops children to a private uid: needs root")


@pytest.fixture(scope="module")
def t2_pool():
    with SandboxPool(1, tier="T2", limits=Limits(wall_s=1.0, program_wall_s=10.0)) as p:
        assert p.tier == "T2" and p.tier_info["checks"]["uid"] >= SANDBOX_UID_BASE
        yield p


T2_CASES = {
    "busy_loop": ("def f():\n    while True: pass\n", lambda r: statuses(r) == ["timeout"]),
    "fork_bomb": ("import os\ndef f():\n    while True: os.fork()\n",
                  lambda r: statuses(r) == ["error"] and err_of(r) == "BlockingIOError"),
    # /tmp is world-writable without a mount namespace: the write may land, but the zygote deletes what
    # the sandbox uid left there before the next task (run_contained checks the canary is gone).
    "write_outside": ("import os\ndef f():\n    r = []\n"
                      "    for p in ('/tmp/canary', '/root/canary', '/usr/canary', '/etc/canary'):\n"
                      "        try: open(p, 'w').write('x'); r.append('wrote')\n"
                      "        except OSError as e: r.append(type(e).__name__)\n    return r, os.getuid()\n",
                      lambda r: _denied_everywhere_as_a_sandbox_uid(json.loads(r.calls[0]["output"]))),
    "delete_sentinel": (None, lambda r: statuses(r) == ["error"]
                        and err_of(r) in ("PermissionError", "FileNotFoundError")),
    "connect": ("import socket\ndef f(port):\n    socket.create_connection(('127.0.0.1', port), timeout=1)\n",
                lambda r: statuses(r) == ["error"] and err_of(r) == "PermissionError"),
    "kill_all": ("import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n",
                 lambda r: statuses(r) == ["error"] and err_of(r) == "PermissionError"),
    "read_root_file": ("def f(d):\n    return open(d + '/root_secret.txt').read()\n",
                       lambda r: statuses(r) == ["error"] and err_of(r) == "PermissionError"),
    "lazy_stdlib_import": ("def f():\n    import encodings.idna, json.tool, xml.dom.minidom\n"
                           "    return 'b\\u00fccher.example'.encode('idna')\n",
                           lambda r: r.calls[0]["output"] == json.dumps(repr(b"xn--bcher-kva.example"))),
}


def _denied_everywhere_as_a_sandbox_uid(output_repr: str) -> bool:
    outcomes, uid = ast.literal_eval(output_repr)
    return outcomes[1:] == ["PermissionError"] * 3 and SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UID_COUNT


@needs_root
def test_sandbox_uids_are_leased_once_per_machine():
    """Two leases never share a uid, in one process or across processes; a released uid is free again."""
    first = UidLease(SANDBOX_UID_BASE + 7)
    second = UidLease(SANDBOX_UID_BASE + 7)
    holder = subprocess.run(
        [sys.executable, "-c", "from evals.execution.launch import UidLease, SANDBOX_UID_BASE as B\n"
                               "print(UidLease(B + 7).uid)"],
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
    other_process_uid = int(holder.stdout.strip().splitlines()[-1])
    try:
        # Sandbox pools of other test workers may hold the preferred uid, so the first lease may get
        # another one; what must hold is that no two live leases share a uid.
        assert first.uid >= SANDBOX_UID_BASE and second.uid != first.uid
        assert other_process_uid not in (first.uid, second.uid)
        first.release()
        again = UidLease(first.uid)
        assert again.uid == first.uid
        again.release()
    finally:
        first.release()
        second.release()


@needs_root
@pytest.mark.parametrize("case", sorted(T2_CASES))
def test_t2_contains(t2_pool, host, case):  # noqa: F811 (pytest fixture)
    src, ok = T2_CASES[case]
    calls = None
    if case == "delete_sentinel":
        src = ("import shutil, os\ndef f(d):\n    try: os.remove(os.path.join(d, 'keep.txt'))\n"
               "    except OSError: pass\n    shutil.rmtree(d)\n")
    if case in ("delete_sentinel", "read_root_file"):
        calls = [{"kwargs": {"d": host["dir"]}}]
    if case == "connect":
        calls = [{"kwargs": {"port": host["port"]}}]
    res = run_contained(t2_pool, host, src, calls=calls)
    assert ok(res), res


def test_t3_refused_unless_opted_in(monkeypatch):
    monkeypatch.delenv(ALLOW_WEAK_ENV, raising=False)
    with pytest.raises(SandboxUnavailable, match=ALLOW_WEAK_ENV):
        SandboxPool(1, tier="T3")
    monkeypatch.setenv(TIER_ENV, "T3")  # forcing through the environment is refused the same way
    with pytest.raises(SandboxUnavailable, match=ALLOW_WEAK_ENV):
        SandboxPool(1)
    with pytest.raises(SandboxUnavailable, match="unknown"):
        require_tier("T9")
    monkeypatch.setenv(ALLOW_WEAK_ENV, "1")
    with SandboxPool(1) as weak:
        assert weak.tier == "T3"
        res = weak.run_one(Program("weak", "def f(x):\n    return x + 1\n", "f", [{"kwargs": {"x": 1}}]))
        assert res.calls[0]["output"] == json.dumps("2")


def test_run_twice_uses_different_workers(pool):
    from evals.execution.determinism import run_twice, run_twice_results

    progs = [Program(f"rt{i}", "import os\ndef f():\n    return os.getuid()\n", "f", [{"kwargs": {}}])
             for i in range(5)]
    for tid, (a, b) in run_twice_results(pool, progs).items():
        assert a.worker != b.worker, tid
        # Each worker has its own sandbox uid, so the program itself sees two different sandboxes.
        assert a.calls[0]["output"] != b.calls[0]["output"]
    assert all(v == [False] for v in run_twice(pool, progs).values())  # the uid differs: flagged


def test_run_twice_single_worker_restarts_between_attempts():
    from evals.execution.determinism import run_twice_results

    with SandboxPool(1, limits=Limits(wall_s=1.0)) as one:
        prog = Program("pid", "import os\ndef f():\n    return os.getppid()\n", "f", [{"kwargs": {}}])
        a, b = run_twice_results(one, [prog])["pid"]
        assert a.worker == b.worker == 0
        assert one.workers[0].restarts == 1
        if one.tier == "T2":  # no pidns: the zygote's pid is visible and a fresh zygote has a new one
            assert a.calls[0]["output"] != b.calls[0]["output"]


@needs_root
def test_t2_sweeps_processes_when_forks_are_allowed(t2_pool, host):  # noqa: F811 (pytest fixture)
    """With NPROC raised, a forked child outlives `f`; it must not survive the task (process-group kill,
    then the /proc sweep by uid; run_contained checks that no process of a sandbox uid is left)."""
    src = ("import os, time\ndef f():\n    pid = os.fork()\n    if pid == 0:\n        time.sleep(600)\n"
           "        os._exit(0)\n    return 'forked'\n")
    res = run_contained(t2_pool, host, src, limits=Limits(wall_s=1.0, program_wall_s=10.0, nproc=8))
    assert res.calls[0]["output"] == json.dumps(repr("forked"))
