"""The adversarial table of ../shared/SANDBOX.md: each program runs between benign neighbours and is checked
against invariants a-i (verdict, pool alive, host files, loopback, worker restarts, neighbours, strays,
wall time, secrets)."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from evals.execution import Limits, Program, outputs_match
from evals.execution.launch import SANDBOX_UID_BASE, SANDBOX_UID_COUNT
SECRET = os.environ["SBX_FAKE_SECRET_TOKEN"]  # planted by conftest before the pool starts

WALL = 1.0
GRACE = 4.0


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Sentinel dir with secrets, a loopback listener, and the canary paths a program may try to create."""
    d = tmp_path_factory.mktemp("sentinel")
    (d / "keep.txt").write_text("keep")
    (d / "public_secret.txt").write_text(SECRET)
    os.chmod(d / "public_secret.txt", 0o644)
    (d / "root_secret.txt").write_text(SECRET)
    os.chmod(d / "root_secret.txt", 0o600)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    lst.setblocking(False)
    canaries = ["/tmp/canary", os.path.expanduser("~/canary"), "/tmp/canary_sys"]
    for c in canaries:
        if os.path.exists(c):
            os.remove(c)
    yield {"dir": str(d), "port": lst.getsockname()[1], "listener": lst, "canaries": canaries}
    lst.close()


def _hash_dir(d: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        h.update(name.encode() + open(os.path.join(d, name), "rb").read())
    return h.hexdigest()


def _real_uid(pid: str) -> int | None:
    """From /proc/PID/status: a non-dumpable process's /proc entry is owned by root whatever its uid."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pool_uids(pool) -> set[int]:
    """The sandbox uids this pool's zygotes hold (other pools on the machine lease other uids)."""
    uids = {w.launch.uid for w in pool.workers if w.launch is not None and w.launch.uid is not None}
    return uids or set(range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UID_COUNT))


def _sandbox_procs(uids: set[int]) -> set[int]:
    out = set()
    for e in os.listdir("/proc"):
        if e.isdigit():
            uid = _real_uid(e)
            if uid is not None and uid in uids:
                out.add(int(e))
    return out


BENIGN = "def f(x):\n    return sorted(x)[::-1]\n"


def _benign(tag):
    return Program(f"benign-{tag}", BENIGN, "f", [{"kwargs": {"x": [3, 1, 2]}}, {"kwargs_src": "dict(x='cab')"}])


def _benign_ok(res):
    assert res.status == "ok", res
    assert outputs_match(res.calls[0], json.dumps(repr([3, 2, 1])))
    assert outputs_match(res.calls[1], json.dumps(repr(["c", "b", "a"])))


def run_contained(pool, host, source, *, entry="f", calls=None, mode="calls", limits=None):
    """Run `source` between two benign programs and check invariants b-i; return its result for (a)."""
    calls = [{"kwargs": {}}] if calls is None else calls
    before_hash = _hash_dir(host["dir"])
    uids = _pool_uids(pool)
    before_procs = _sandbox_procs(uids)
    lim = limits or Limits(wall_s=WALL, program_wall_s=10.0)
    prog = Program("adv", source, entry, calls, mode=mode, limits=lim)
    t0 = time.monotonic()
    results = {r.task_id: r for r in pool.run([_benign("a"), prog, _benign("b")])}
    elapsed = time.monotonic() - t0
    res = results["adv"]
    # (b)+(f): neighbours intact and the pool still answers
    _benign_ok(results["benign-a"])
    _benign_ok(results["benign-b"])
    _benign_ok(pool.run_one(_benign("after")))
    # (e): a restart is recorded only for this program
    assert all(c["status"] != "worker_died" for r in (results["benign-a"], results["benign-b"]) for c in r.calls)
    # (c): host files untouched
    assert _hash_dir(host["dir"]) == before_hash
    for c in host["canaries"]:
        assert not os.path.exists(c), c
    # (d): nothing reached the loopback listener
    with pytest.raises(BlockingIOError):
        host["listener"].accept()
    # (g): no stray sandbox process survives (zygotes may have been restarted, so compare counts)
    deadline = time.monotonic() + 3
    uids |= _pool_uids(pool)   # a zygote restarted on this program may hold a new lease
    while len(_sandbox_procs(uids)) > len(before_procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sandbox_procs(uids)) <= len(before_procs), (_sandbox_procs(uids), before_procs)
    # (h): bounded wall time
    n = max(1, len(calls))
    assert elapsed <= lim.task_budget_s(n) + GRACE, elapsed
    # (i): no secret anywhere in what came back
    blob = json.dumps(res.to_json())
    assert SECRET not in blob and "SBX_FAKE_SECRET_TOKEN" not in blob
    return res


def statuses(res):
    return [c["status"] for c in res.calls]


def err_of(res, i=0):
    return res.calls[i]["exc"]


# ---------------------------------------------------------------- 1-11: time, memory, processes
def test_01_busy_loop(pool, host):
    assert statuses(run_contained(pool, host, "def f():\n    while True: pass\n")) == ["timeout"]


def test_02_sleep(pool, host):
    assert statuses(run_contained(pool, host, "import time\ndef f():\n    time.sleep(10**6)\n")) == ["timeout"]


def test_03_ignore_signals(pool, host):
    src = ("import signal\ndef f():\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
           "    signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n    while True: pass\n")
    assert statuses(run_contained(pool, host, src)) == ["timeout"]


def test_04_catch_everything(pool, host):
    src = "def f():\n    while True:\n        try:\n            while True: pass\n        except BaseException:\n            pass\n"
    assert statuses(run_contained(pool, host, src)) == ["timeout"]


def test_05_catastrophic_regex(pool, host):
    src = "import re\ndef f():\n    return re.match(r'(a+)+$', 'a'*64+'b')\n"
    assert statuses(run_contained(pool, host, src)) == ["timeout"]


def test_06_bigint(pool, host):
    res = run_contained(pool, host, "def f():\n    return 3 ** (10**10) % 7\n")
    assert statuses(res) in (["timeout"], ["memory"])


def test_07_huge_alloc(pool, host):
    res = run_contained(pool, host, "def f():\n    return len(bytearray(8 << 30))\n")
    assert statuses(res) == ["memory"] and err_of(res) == "MemoryError"


def test_08_alloc_catch_spin(pool, host):
    src = ("def f():\n    xs = []\n    try:\n        while True: xs.append(bytearray(1 << 24))\n"
           "    except MemoryError:\n        xs = None\n    while True: pass\n")
    assert statuses(run_contained(pool, host, src)) == ["timeout"]


def test_09_fork_bomb(pool, host):
    res = run_contained(pool, host, "import os\ndef f():\n    while True: os.fork()\n")
    # NPROC=1: the first fork fails (BlockingIOError), so the bomb never starts.
    assert statuses(res) == ["error"] and err_of(res) == "BlockingIOError"


def test_10_setsid_orphan(pool, host):
    src = ("import os, time\ndef f():\n    try:\n        if os.fork() == 0:\n            os.setsid(); time.sleep(600)\n"
           "    except OSError as e:\n        return 'blocked'\n    return 'forked'\n")
    res = run_contained(pool, host, src)
    assert res.calls[0]["status"] in ("ok", "error") and res.calls[0]["output"] is not None


def test_11_thread(pool, host):
    src = "import threading, time\ndef f():\n    threading.Thread(target=time.sleep, args=(10**6,)).start()\n    return 1\n"
    res = run_contained(pool, host, src)
    assert statuses(res) == ["error"] and err_of(res) == "RuntimeError"


# ---------------------------------------------------------------- 12-16: filesystem
def test_12_shell_escape(pool, host):
    src = ("import os, posix, subprocess\ndef f():\n    r = []\n"
           "    for g in (lambda: os.system('touch /tmp/canary'), lambda: posix.system('touch /tmp/canary_sys'),\n"
           "              lambda: subprocess.run(['touch', '/tmp/canary'])):\n"
           "        try: r.append(str(g()))\n        except Exception as e: r.append(type(e).__name__)\n    return r\n")
    assert statuses(run_contained(pool, host, src)) == ["ok"]


def test_13_write_canaries(pool, host):
    src = ("import os\ndef f():\n    r = []\n    for p in ('/tmp/canary', os.path.expanduser('~/canary'), '/root/canary'):\n"
           "        try: open(p, 'w').write('x'); r.append('wrote-in-sandbox')\n"
           "        except OSError as e: r.append(type(e).__name__)\n    return r\n")
    assert statuses(run_contained(pool, host, src)) == ["ok"]


def test_14_delete_sentinel(pool, host):
    src = ("import shutil, os\ndef f(d):\n    try: os.remove(os.path.join(d, 'keep.txt'))\n"
           "    except OSError: pass\n    shutil.rmtree(d)\n")
    res = run_contained(pool, host, src, calls=[{"kwargs": {"d": host["dir"]}}])
    assert statuses(res) == ["error"] and err_of(res) == "FileNotFoundError"


def test_15_fill_tmpfs(pool, host):
    src = ("def f():\n    for i in range(200):\n        with open('f%d' % i, 'wb') as fh: fh.write(b'x' * (1 << 20))\n"
           "    return 'all written'\n")
    res = run_contained(pool, host, src, limits=Limits(wall_s=5.0))
    assert statuses(res) == ["error"] and err_of(res) == "OSError"


def test_16_big_file(pool, host):
    src = "def f():\n    with open('big', 'wb') as fh: fh.write(b'x' * (100 << 20))\n"
    res = run_contained(pool, host, src, limits=Limits(wall_s=5.0))
    assert statuses(res) == ["error"] and err_of(res) in ("OSError",)


# ---------------------------------------------------------------- 17-18: output floods
def test_17_stdout_flood(pool, host):
    assert statuses(run_contained(pool, host, "import sys\ndef f():\n    while True: sys.stdout.write('x'*65536)\n")) \
        == ["timeout"]


def test_18_huge_return(pool, host):
    res = run_contained(pool, host, "def f():\n    return 'x' * 10**8\n")
    assert statuses(res) == ["output_too_large"]
    # An object whose repr is over the cap is caught after printing (the length pre-check can't see it).
    src = "class Big:\n    def __repr__(self):\n        return 'y' * (1 << 20)\ndef f():\n    return Big()\n"
    assert statuses(run_contained(pool, host, src)) == ["output_too_large"]


# ---------------------------------------------------------------- 19-25: network, signals, secrets
def test_19_connect(pool, host):
    src = "import socket\ndef f(port):\n    socket.create_connection(('127.0.0.1', port), timeout=1)\n"
    res = run_contained(pool, host, src, calls=[{"kwargs": {"port": host["port"]}}])
    assert statuses(res) == ["error"] and err_of(res) == "PermissionError"


def test_20_ctypes_connect(pool, host):
    src = ("import ctypes, struct, socket\ndef f(port):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
           "    fd = libc.socket(2, 1, 0)\n    addr = struct.pack('!HH4s8x', 2, port, socket.inet_aton('127.0.0.1'))\n"
           "    addr = struct.pack('H', 2) + addr[2:]\n    return fd, libc.connect(fd, addr, 16)\n")
    res = run_contained(pool, host, src, calls=[{"kwargs": {"port": host["port"]}}])
    assert res.calls[0]["output"] == json.dumps(repr((-1, -1)))


def test_21_kill_parent(pool, host):
    src = "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n"
    res = run_contained(pool, host, src)
    assert statuses(res) == ["error"] and err_of(res) == "PermissionError"


def test_22_kill_everything(pool, host):
    res = run_contained(pool, host, "import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n")
    assert statuses(res) == ["error"] and err_of(res) == "PermissionError"


def test_23_ptrace(pool, host):
    src = "import ctypes, os\ndef f():\n    return ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0)\n"
    assert run_contained(pool, host, src).calls[0]["output"] == json.dumps("-1")


def test_24_environ_and_proc(pool, host):
    src = ("import os, glob\ndef f():\n    found = [k for k in os.environ if any(s in k for s in ('TOKEN','KEY','SECRET'))]\n"
           "    for p in glob.glob('/proc/*/environ'):\n        try: found.append(open(p, 'rb').read().decode('latin1'))\n"
           "        except OSError: pass\n    return found\n")
    res = run_contained(pool, host, src)
    assert statuses(res) == ["ok"]


def test_25_read_secrets(pool, host):
    src = ("def f(d):\n    r = []\n    for n in ('public_secret.txt', 'root_secret.txt'):\n"
           "        try: r.append(open(d + '/' + n).read())\n        except OSError as e: r.append(type(e).__name__)\n    return r\n")
    res = run_contained(pool, host, src, calls=[{"kwargs": {"d": host["dir"]}}])
    assert res.calls[0]["output"] == json.dumps(repr(["FileNotFoundError", "FileNotFoundError"]))


# ---------------------------------------------------------------- 26-33: judge tampering
def test_26_sys_exit_at_import(pool, host):
    res = run_contained(pool, host, "import sys\nsys.exit(0)\ndef f():\n    return 1\n")
    assert statuses(res) == ["error"] and err_of(res) == "SystemExit"
    assert not outputs_match(res.calls[0], json.dumps("1"))


def test_27_os_exit(pool, host):
    res = run_contained(pool, host, "import os\ndef f():\n    os._exit(0)\n")
    assert statuses(res) == ["error"] and res.calls[0]["output"] is None
    assert not outputs_match(res.calls[0], json.dumps("1"))


def test_28_always_equal(pool, host):
    src = ("class A:\n    def __eq__(s, o): return True\n    __abs__ = lambda s: 0\n    __sub__ = lambda s, o: s\n"
           "    def __repr__(s): return 'A()'\ndef f():\n    return A()\n")
    res = run_contained(pool, host, src)
    assert statuses(res) == ["ok"] and not outputs_match(res.calls[0], json.dumps("42"))


def test_29_gc_frame_walk(pool, host):
    marker = "EXPECTED-MARKER-91c2"
    src = ("import gc, sys\ndef f():\n    hits = [o for o in gc.get_objects() if isinstance(o, str) and 'EXPECTED-MARKER' in o]\n"
           "    fr = sys._getframe()\n    while fr:\n        hits += [v for v in fr.f_locals.values() if isinstance(v, str) and 'MARKER-91' in v]\n"
           "        fr = fr.f_back\n    return len([h for h in hits if h != 'EXPECTED-MARKER' and h != 'MARKER-91'])\n")
    res = run_contained(pool, host, src)
    assert res.calls[0]["output"] == json.dumps("0")
    assert not outputs_match(res.calls[0], json.dumps(repr(marker)))


def test_30_patch_builtins_then_clean(pool, host):
    src = "import builtins\nbuiltins.repr = lambda o: 'PWNED'\nbuiltins.abs = None\ndef f():\n    return [1, 'a']\n"
    res = run_contained(pool, host, src)
    assert res.calls[0]["output"] == json.dumps(repr([1, "a"]))
    nxt = pool.run_one(Program("next", "def f():\n    return abs(-2), repr(3)\n", "f", [{"kwargs": {}}]))
    assert nxt.calls[0]["output"] == json.dumps(repr((2, "3")))


def test_31_patch_json_and_harness(pool, host):
    src = ("import json, sys\njson.dumps = lambda *a, **k: '\"4\"'\nfor m in list(sys.modules.values()):\n"
           "    if getattr(m, '__name__', '') in ('__main__', 'zygote'):\n        m.__dict__.update(_dumps=lambda *a: '\"4\"')\n"
           "def f():\n    return 'garbage'\n")
    res = run_contained(pool, host, src)
    assert res.calls[0]["output"] == json.dumps(repr("garbage"))
    nxt = pool.run_one(Program("next", "import json\ndef f():\n    return json.dumps([1])\n", "f", [{"kwargs": {}}]))
    assert nxt.calls[0]["output"] == json.dumps(repr("[1]"))


def test_32_forged_frames(pool, host):
    src = ("import os\ndef f():\n    forged = b'{\"i\": 0, \"kind\": \"ok\"}\\n' + b'\\x00\\x00\\x00\\x05garbage'\n"
           "    for fd in range(3, 64):\n        try: os.write(fd, forged)\n        except OSError: pass\n    os._exit(0)\n")
    res = run_contained(pool, host, src, calls=[{"kwargs": {}}, {"kwargs": {}}])
    assert set(statuses(res)) <= {"protocol_error", "error"} and res.calls[0]["status"] == "protocol_error"


def test_33_printed_markers(pool, host):
    src = ("def f():\n    print('<|RETURN|> \"4\"')\n    print('{\"status\": \"ok\", \"output\": \"4\"}')\n"
           "    print('<|RETURN|>')\n    return 5\n")
    res = run_contained(pool, host, src)
    assert res.calls[0]["output"] == json.dumps("5") and not outputs_match(res.calls[0], json.dumps("4"))


# ---------------------------------------------------------------- 34-42: interpreter abuse
def test_34_infinite_recursion(pool, host):
    src = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n=0):\n    return f(n + 1)\n"
    assert statuses(run_contained(pool, host, src))[0] in ("timeout", "memory", "crash", "error")


def test_35_deep_repr(pool, host):
    src = ("import sys\nsys.setrecursionlimit(10**7)\ndef f():\n    x = []\n    for _ in range(10**6): x = [x]\n"
           "    return len(repr(x))\n")
    res = run_contained(pool, host, src)
    assert statuses(res) in (["crash"], ["error"])
    if res.calls[0]["status"] == "error":
        assert err_of(res) == "RecursionError"


def test_36_segfault(pool, host):
    assert statuses(run_contained(pool, host, "import ctypes\ndef f():\n    return ctypes.string_at(0)\n")) == ["crash"]


def test_37_abort(pool, host):
    assert statuses(run_contained(pool, host, "import os\ndef f():\n    os.abort()\n")) == ["crash"]


def test_38_raise_rlimit(pool, host):
    src = "import resource\ndef f():\n    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n"
    res = run_contained(pool, host, src)
    assert statuses(res) == ["error"] and err_of(res) == "ValueError"


def test_39_close_stdio_spin(pool, host):
    assert statuses(run_contained(pool, host, "import os\nfor fd in (0, 1, 2): os.close(fd)\ndef f():\n    while True: pass\n")) \
        == ["timeout"]


def test_40_input(pool, host):
    res = run_contained(pool, host, "def f():\n    return input()\n")
    assert statuses(res) == ["error"] and err_of(res) == "EOFError"


def test_41_deep_return(pool, host):
    res = run_contained(pool, host, "def f():\n    x = []\n    for _ in range(10**6): x = [x]\n    return x\n",
                        limits=Limits(wall_s=5.0))  # the verdict, not the speed, is under test
    assert statuses(res) in (["error"], ["crash"])
    if res.calls[0]["status"] == "error":
        assert err_of(res) == "RecursionError"


def test_42_set_order_is_pinned(pool, host):
    src = "def f():\n    return list({'apple', 'banana', 'cherry', 'date', 'elder', 'fig'})\n"
    first = run_contained(pool, host, src).calls[0]["output"]
    again = [r.calls[0]["output"] for r in pool.run(
        Program(f"set{i}", src, "f", [{"kwargs": {}}]) for i in range(6))]  # spread over both workers
    assert set(again) == {first}


# ---------------------------------------------------------------- 43: run-twice rule (pipeline)
@pytest.mark.parametrize("expr", ["time.time()", "random.random() if False else id(object())", "object()"])
def test_43_nondeterminism_flagged(pool, host, expr):
    from evals.execution.determinism import run_twice

    src = f"import time, random\ndef f():\n    return {expr}\n"
    agreed = run_twice(pool, [Program("nd", src, "f", [{"kwargs": {}}])])
    assert agreed["nd"] == [False]
    stable = run_twice(pool, [Program("st", "import random\ndef f():\n    return random.random()\n", "f",
                                      [{"kwargs": {}}])])
    assert stable["st"] == [True]  # random is seeded identically in every child
