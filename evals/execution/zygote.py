"""The sandbox-side worker ("zygote"): a long-lived interpreter that forks one child per program.

This file runs *inside* the sandbox (bubblewrap at T1), never in the harness. It uses only the standard
library and `pyseccomp`, reads length-prefixed JSON task batches on fd 0, and answers one length-prefixed
JSON frame per task on fd 1. The expected outputs never come here: the zygote only reports what each
call produced, and the trusted parent does the comparing.

Each child: own process group, every fd closed but its result pipe, stdio on /dev/null (or a capped pipe in
script mode), rlimits, a seccomp filter, `random.seed(0)`, then the candidate. It writes one JSON line per
call through serializers bound before the candidate ran, so monkeypatching `repr`/`json` cannot forge them.
"""
import builtins
import ctypes
import json
import os
import random
import resource
import select
import shutil
import signal
import stat
import struct
import sys
import time

MAX_FRAME = 64 << 20
_LEN = struct.Struct(">I")
PROTO_IN, PROTO_OUT = 200, 201

# Bound before any candidate runs: the child serialises with these, not with whatever the program patched.
_repr, _str, _type, _len, _isinstance = builtins.repr, builtins.str, builtins.type, builtins.len, builtins.isinstance
_dumps, _write, _exit = json.dumps, os.write, os._exit
_BaseException, _MemoryError, _dict = BaseException, MemoryError, dict
_SIZED_BUILTINS = frozenset({str, bytes, bytearray, list, tuple, dict, set, frozenset})


# ---------------------------------------------------------------- framing (zygote <-> harness)
def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    body = _read_exact(fd, n)
    return None if body is None else json.loads(body)


def write_frame(fd, obj):
    data = json.dumps(obj).encode()
    data = _LEN.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------- child-side hardening
_MAGIC_PID = 0x3EC0DE5  # above pid_max: stands in for the child's pid in the exported BPF
_BPF_TEMPLATE = None
_LIBC = ctypes.CDLL(None, use_errno=True)


def _build_seccomp_template():
    """Compile the filter once (libseccomp takes milliseconds) and export its BPF; children patch in their pid."""
    import pyseccomp as sc
    import errno
    import socket
    import tempfile

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
                 "pidfd_send_signal", "setsid", "setpgid", "unshare", "setns", "mount", "umount2", "chroot",
                 "pivot_root", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "io_uring_setup",
                 "io_uring_enter", "io_uring_register", "userfaultfd", "kexec_load", "init_module",
                 "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
                 "open_by_handle_at", "name_to_handle_at", "setuid", "setgid", "setreuid", "setregid",
                 "setresuid", "setresgid", "setgroups"):
        try:
            f.add_rule(eperm, name)
        except Exception:  # syscall unknown on this arch
            pass
    # Signals only to ourselves (Python's os.abort uses tgkill on its own pid).
    for name in ("kill", "tgkill", "tkill"):
        f.add_rule(eperm, name, sc.Arg(0, sc.NE, _MAGIC_PID))
    f.add_rule(eperm, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    # clone3 takes its flags by pointer, which seccomp cannot inspect: make libc fall back to clone.
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # clone with any CLONE_NEW* flag (user, pid, net, ipc, uts, mount, cgroup namespaces).
    for bit in (0x10000000, 0x20000000, 0x40000000, 0x04000000, 0x08000000, 0x00020000, 0x02000000):
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        bpf = tmp.read()
    magic = struct.pack("<I", _MAGIC_PID)
    if bpf.count(magic) < 1 or len(bpf) % 8:
        raise RuntimeError("unexpected seccomp BPF layout")
    return bpf


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_seccomp():
    """Load the template filter with this process's pid patched into the kill/tgkill/tkill rules."""
    prog = bytearray(_BPF_TEMPLATE)
    # BPF instructions are 8 bytes: code(2) jt(1) jf(1) k(4); only the k field of comparisons holds the magic.
    pid = struct.pack("<I", os.getpid())
    magic = struct.pack("<I", _MAGIC_PID)
    for off in range(4, len(prog), 8):
        if prog[off:off + 4] == magic:
            prog[off:off + 4] = pid
    buf = ctypes.create_string_buffer(bytes(prog), len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = _LIBC
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def _case2code_environment():
    """Reproduce the environment Case2Code's reference outputs were recorded in (see case2code.py): its
    harness had replaced `exit`/`quit` with None, and it ran numpy 1.x, whose scalars print as `1`, not
    `np.int64(1)`. Child-only: the zygote's own builtins and numpy state are untouched."""
    builtins.exit = builtins.quit = None
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.set_printoptions(legacy="1.25")
        except Exception:
            pass


def _set_limits(lim, n_calls):
    cpu = int(lim["cpu_s"]) * max(1, n_calls + 1)
    pairs = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"])),
        (resource.RLIMIT_FSIZE, (lim["fsize_bytes"], lim["fsize_bytes"])),
        (resource.RLIMIT_NOFILE, (lim["nofile"], lim["nofile"])),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if lim["nproc"] is not None:
        pairs.append((resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"])))
    for what, value in pairs:
        resource.setrlimit(what, value)


def _child_main(task, start, wfd, cfg):
    """Runs in the forked child: harden, exec the candidate, call it, stream one JSON line per call."""
    cap = task["limits"]["output_cap"]
    # Locals, not module globals: a program that patches this module's names cannot reach these bindings.
    _dumps, _write, _exit, _repr, _len, _type, _str = (json.dumps, os.write, os._exit, builtins.repr,
                                                       builtins.len, builtins.type, builtins.str)
    _BaseException, _isinstance, _dict = BaseException, builtins.isinstance, dict
    _sized = _SIZED_BUILTINS

    def _exc_text(e):
        try:
            msg = _str(e)
        except _BaseException:
            msg = "<unprintable>"
        return "%s: %s" % (_type(e), msg)

    def send(obj):
        data = (_dumps(obj) + "\n").encode()
        while data:
            data = data[_write(wfd, data):]

    def outcome(i, thunk):
        try:
            value = thunk()
            # A builtin sequence/mapping of n items prints as at least n characters: refuse before building
            # a huge repr (`'x' * 10**8` would otherwise cost seconds and hundreds of MiB).
            if _type(value) in _sized and _len(value) > cap:
                send({"i": i, "kind": "too_large", "value": None, "exc": None})
                return
            try:
                text = _dumps(_repr(value))
            except _BaseException as e:  # a __repr__ that raises or returns a non-str
                send({"i": i, "kind": "error", "value": _dumps(_exc_text(e)), "exc": _type(e).__name__})
                return
            if _len(text) > cap:
                send({"i": i, "kind": "too_large", "value": None, "exc": None})
            else:
                send({"i": i, "kind": "return", "value": text, "exc": None})
        except _BaseException as e:
            text = _dumps(_exc_text(e))
            send({"i": i, "kind": "error", "value": text if _len(text) <= cap else None,
                  "exc": _type(e).__name__})

    random.seed(0)
    if task.get("compat") == "case2code":
        _case2code_environment()
    mode = task.get("mode", "calls")
    calls = task.get("calls") or []
    src = task.get("calls_src")
    # Case2Code `example_str`: source that defines `examples` (a list of kwargs dicts) and may use the
    # program's own names (`dict(x=formatr)`), so it runs *after* the program in the program's namespace.
    # A list means generation rounds: each round runs in a fresh namespace with a freshly loaded program,
    # as the original data pipeline did (one process per round).
    rounds = [src] if _isinstance(src, _str) else (list(src) if src is not None else None)
    fresh_rounds = not _isinstance(src, _str)
    loaded_sent = [False]

    def load_program():
        """-> a fresh namespace with the program executed in it (or reports why not and exits)."""
        ns = {"__builtins__": builtins, "__name__": "__main__"}
        try:
            code = compile(task["source"], "<program>", "exec")
            exec(code, ns)
        except _BaseException as e:
            if mode == "script":
                try:
                    sys.stdout.flush()
                except _BaseException:
                    pass
                code_ = e.code if _isinstance(e, SystemExit) else 1
                send({"script_exit": code_ if _isinstance(code_, int) else 1, "exc": _type(e).__name__,
                      "value": _dumps(_exc_text(e))[:cap]})
                _exit(0)
            send({"load_error": _dumps(_exc_text(e)), "exc": _type(e).__name__})
            _exit(0)
        if not loaded_sent[0]:
            loaded_sent[0] = True
            if mode != "script":
                send({"loaded": True})
        return ns

    def run_examples(ns, text, preset):
        if preset:
            ns["examples"] = []  # later rounds extend with `examples += [...]`
        try:
            exec(compile(text, "<examples>", "exec"), ns)
            got = ns["examples"]
            if not _isinstance(got, list):
                raise TypeError("`examples` is %s, not a list" % _type(got).__name__)
            return got
        except _BaseException as e:  # e.g. the examples name a function the program does not define
            send({"load_error": _dumps(_exc_text(e)), "exc": _type(e).__name__, "note": "examples failed"})
            _exit(0)

    def call_one(i, kw, ns):
        if not _isinstance(kw, _dict):
            send({"i": i, "kind": "bad_input", "value": "kwargs are not a dict: %s" % _type(kw).__name__,
                  "exc": None})
            return
        fn = ns.get(task["entry"])  # looked up per call, as the reference harness did
        if fn is None:
            outcome(i, lambda: (_ for _ in ()).throw(NameError("name %r is not defined" % task["entry"])))
            return
        outcome(i, lambda: fn(**kw))

    n = task["n_calls"]
    if mode == "script":
        load_program()
        try:
            sys.stdout.flush()
        except _BaseException:
            pass
        send({"script_exit": 0})
        _exit(0)
    if rounds is None:
        ns = load_program()
        for i in range(start, n):
            if "kwargs_src" in calls[i]:
                try:
                    kw = eval(calls[i]["kwargs_src"], {"__builtins__": builtins})
                except _BaseException as e:
                    send({"i": i, "kind": "bad_input", "value": "kwargs_src failed: " + _exc_text(e)[:300],
                          "exc": None})
                    continue
            else:
                kw = calls[i]["kwargs"]
            call_one(i, kw, ns)
        _exit(0)
    offset = 0
    ns = None
    for k, text in enumerate(rounds):
        if ns is None or fresh_rounds:
            ns = load_program()
        examples = run_examples(ns, text, fresh_rounds and k > 0)
        m = _len(examples)
        if offset + m > n:
            send({"fatal": "examples define more than the expected %d calls" % n})
            _exit(0)
        for j in range(max(0, start - offset), m):
            call_one(offset + j, examples[j], ns)
        offset += m
    if offset != n:
        send({"fatal": "examples define %d calls, expected %d" % (offset, n)})
    _exit(0)


def _fork_child(task, start, cfg, workdir):
    r, w = os.pipe()
    out_r = out_w = None
    if task.get("mode") == "script":
        out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.chdir(workdir)
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(out_w if out_w is not None else null, 1)
            os.dup2(null, 2)
            keep = os.dup2(w, 3)
            n_path = _len(cfg.get("fd_paths") or ())
            if n_path:  # keep the import-path fds (T2); everything else goes
                os.closerange(4, FIRST_PATH_FD)
                os.closerange(FIRST_PATH_FD + n_path, 1 << 16)
            else:
                os.closerange(4, 1 << 16)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if cfg.get("drop_uid") is not None:  # T2: the zygote itself may still be root
                os.setgroups([])
                os.setresgid(cfg["drop_uid"], cfg["drop_uid"], cfg["drop_uid"])
                os.setresuid(cfg["drop_uid"], cfg["drop_uid"], cfg["drop_uid"])
            _set_limits(task["limits"], task["n_calls"] - start)
            if cfg.get("seccomp"):
                _install_seccomp()
            sys.argv = ["<program>"]
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            sys.stdin = open(0, "r", closefd=False)
            _child_main(task, start, keep, cfg)
        except _BaseException:
            pass
        os._exit(0)
    os.close(w)
    if out_w is not None:
        os.close(out_w)
    return pid, r, out_r


def _kill_everything(pid, cfg, lim):
    """Kill the child's process group, then every process we may signal (the whole pidns / our uid)."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass
    if cfg.get("kill_all"):
        try:
            os.kill(-1, signal.SIGKILL)  # never reaches us or pid 1 of the pidns
        except OSError:
            pass
    elif cfg.get("drop_uid") is not None:  # T2: no pidns, so sweep /proc (and shared temp dirs) by uid
        # With NPROC=1 the child cannot create a process at all (the count is per uid, one uid per
        # worker), and seccomp keeps any descendant in its process group, so the /proc scan (~ms) is only
        # needed when the limits allow forks.
        if lim.get("nproc") != 1:
            _kill_uid(cfg["drop_uid"])
        _sweep_files(cfg["drop_uid"])


def _real_uid(pid):
    """The real uid from /proc/PID/status: a non-dumpable process's /proc entry is owned by root."""
    try:
        with open("/proc/%s/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def _kill_uid(uid):
    """Kill every process running as `uid` (repeat: a dying fork may still spawn)."""
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _real_uid(entry) == uid:
                found = True
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        if not found:
            break


def _sweep_files(uid):
    """Delete what `uid` left at the top of world-writable directories (T2 cannot hide them; it cleans)."""
    for d in SHARED_WRITABLE:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_uid != uid:
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass


def _reap(pid):
    """Wait for the (already SIGKILLed) child, then collect any other zombie of ours."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = None
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return status


SIG_STATUS = {signal.SIGXCPU: "timeout", signal.SIGKILL: "timeout", signal.SIGSEGV: "crash",
              signal.SIGBUS: "crash", signal.SIGABRT: "crash", signal.SIGILL: "crash", signal.SIGFPE: "crash",
              signal.SIGSYS: "crash", signal.SIGXFSZ: "error"}


def _fresh_workdir(path, cfg):
    """An empty 0700 dir owned by the child's uid (T2) or ours. Kept when the last program left it empty
    and unchanged: on a disk (T2, no tmpfs) rmdir+mkdir per program costs milliseconds."""
    owner = cfg.get("drop_uid") if cfg.get("drop_uid") is not None else os.getuid()
    try:
        st = os.lstat(path)
        if (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == owner
                and not os.listdir(path)):
            return
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.unlink(path)  # a symlink or file the program put in its place
    except OSError:
        pass
    os.mkdir(path, 0o700)
    if cfg.get("drop_uid") is not None:  # T2: the child's private cwd, writable by it alone
        os.chown(path, owner, owner)


def run_task(task, cfg):
    """Run one program on all its calls; restart the child after a call that times out or crashes."""
    n = task["n_calls"]
    lim = task["limits"]
    results = [None] * n
    program_deadline = time.monotonic() + lim["program_wall_s"]
    workdir = os.path.join(cfg["tmp"], "task")
    stdout_chunks, stdout_len, stdout_over = [], 0, False
    script = task.get("mode") == "script"
    start = 0
    script_result = None
    while start < n or (script and script_result is None):
        _fresh_workdir(workdir, cfg)
        pid, r, out_r = _fork_child(task, start, cfg, workdir)
        buf = b""
        read_total = 0
        loaded = False
        deadline = min(time.monotonic() + lim["load_wall_s"], program_deadline)
        stop_reason = None  # why we stopped listening: None (EOF), "timeout", "protocol", "too_large"
        fds = [r] + ([out_r] if out_r is not None else [])
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                stop_reason = "timeout"
                break
            ready, _, _ = select.select(fds, [], [], left)
            if out_r is not None and out_r in ready:
                chunk = os.read(out_r, 65536)
                if not chunk:
                    fds.remove(out_r)
                else:
                    room = lim["stdout_cap"] - stdout_len
                    stdout_chunks.append(chunk[:max(room, 0)])
                    stdout_len += len(chunk)
                    if stdout_len > lim["stdout_cap"]:
                        stdout_over = True
                        stop_reason = "too_large"
                        break
            if r not in ready:
                continue
            chunk = os.read(r, 1 << 20)
            if not chunk:
                fds.remove(r)
                if out_r is not None and out_r in fds:
                    deadline = min(deadline, time.monotonic() + 0.2)  # let the last stdout arrive
                continue
            read_total += len(chunk)
            if read_total > lim["task_output_cap"] + 65536:
                stop_reason = "protocol"
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError
                except ValueError:
                    stop_reason = "protocol"
                    break
                if script:
                    if "script_exit" in msg and script_result is None:
                        script_result = msg
                    continue
                if "fatal" in msg:
                    for i in range(start, n):
                        results[i] = {"status": "protocol_error", "output": None, "exc": None,
                                      "note": str(msg["fatal"])[:500]}
                    start = n
                    continue
                if "load_error" in msg:
                    for i in range(start, n):
                        results[i] = {"status": "error", "output": msg["load_error"], "exc": msg.get("exc"),
                                      "note": str(msg.get("note") or "program failed at import")[:200]}
                    start = n
                    continue
                if msg.get("loaded"):
                    loaded = True
                    deadline = min(time.monotonic() + lim["wall_s"], program_deadline)
                    continue
                i = msg.get("i")
                if not loaded or i != start or msg.get("kind") not in ("return", "error", "too_large",
                                                                      "bad_input"):
                    stop_reason = "protocol"
                    break
                kind = msg["kind"]
                value = msg.get("value")
                if value is not None and (not isinstance(value, str) or len(value) > lim["output_cap"] + 64):
                    stop_reason = "protocol"
                    break
                if kind == "return":
                    results[i] = {"status": "ok", "output": value, "exc": None}
                elif kind == "too_large":
                    results[i] = {"status": "output_too_large", "output": None, "exc": "OutputTooLarge"}
                elif kind == "bad_input":
                    results[i] = {"status": "error", "output": None, "exc": None, "note": value}
                else:
                    exc = msg.get("exc") if isinstance(msg.get("exc"), str) else None
                    results[i] = {"status": "memory" if exc == "MemoryError" else "error", "output": value,
                                  "exc": exc}
                start += 1
                deadline = min(time.monotonic() + lim["wall_s"], program_deadline)
            if stop_reason:
                break
        _kill_everything(pid, cfg, lim)
        status = _reap(pid)
        os.close(r)
        if out_r is not None:
            os.close(out_r)
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        if script:
            if script_result is None:
                script_result = {"script_exit": None}
            break
        if start >= n:
            break
        # The child stopped before answering call `start`: say why, for that call only.
        if stop_reason == "protocol":
            st, note = "protocol_error", "malformed or out-of-order result line"
        elif stop_reason == "timeout" or (sig is not None and SIG_STATUS.get(sig) == "timeout"):
            st, note = "timeout", None
        elif sig is not None:
            st, note = SIG_STATUS.get(sig, "crash"), "killed by signal %d" % sig
        else:
            st, note = "error", "exited without a result"
        if not loaded:  # died before the program finished importing: every remaining call shares the fate
            for i in range(start, n):
                results[i] = {"status": st, "output": None, "exc": None, "note": note}
            break
        results[start] = {"status": st, "output": None, "exc": None, "note": note}
        start += 1
        if time.monotonic() >= program_deadline:
            for i in range(start, n):
                results[i] = {"status": "timeout", "output": None, "exc": None, "note": "program wall cap"}
            break
    _fresh_workdir(workdir, cfg)  # nothing a program wrote outlives it
    frame = {"id": task["id"], "calls": results}
    if script:
        sr = script_result
        code = sr.get("script_exit")
        if stdout_over:
            st = "output_too_large"
        elif stop_reason == "timeout" or (sig is not None and SIG_STATUS.get(sig) == "timeout"):
            st = "timeout"
        elif sig is not None:
            st = SIG_STATUS.get(sig, "crash")
        elif code == 0:
            st = "ok"
        else:
            st = "error"
        frame.update(script={"status": st, "exit": code, "exc": sr.get("exc"), "error": sr.get("value"),
                             "stdout": b"".join(stdout_chunks).decode("utf-8", "replace"),
                             "stdout_truncated": stdout_over})
    return frame


FIRST_PATH_FD = 50  # below NOFILE (64) so the numbers stay stable; children keep these open


def _reroute_imports(dirs):
    """T2 without namespaces: the child drops to a uid that cannot traverse e.g. /root/.pyenv, so lazy
    imports (`encodings.idna`, `json.decoder` ...) would fail. Open each such directory once (O_PATH, as
    root) at a fixed fd and point sys.path and every loaded package's __path__ at /proc/self/fd/N: the
    kernel lets a process follow its own fd links, while /root and everything else stays closed to it."""
    import importlib

    table = []
    for k, d in enumerate(dirs):
        fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.dup2(fd, FIRST_PATH_FD + k, inheritable=False)
        os.close(fd)
        table.append((d.rstrip("/"), "/proc/self/fd/%d" % (FIRST_PATH_FD + k)))

    def fix(p):
        for d, alias in table:
            if isinstance(p, str) and (p == d or p.startswith(d + "/")):
                return alias + p[len(d):]
        return p

    sys.path[:] = [fix(p) for p in sys.path]
    for mod in list(sys.modules.values()):
        paths = getattr(mod, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [fix(p) for p in paths]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    return [fd for fd in range(FIRST_PATH_FD, FIRST_PATH_FD + len(table))]


def _preimport(names):
    for name in names:
        try:
            __import__(name)
        except Exception:
            pass


def main():
    cfg = json.loads(sys.argv[1])
    os.dup2(0, PROTO_IN)
    os.dup2(1, PROTO_OUT)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:  # PR_SET_DUMPABLE=0: nothing of our uid may ptrace us or read our /proc memory
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _preimport(cfg.get("preimport", []))
    if cfg.get("seccomp"):
        global _BPF_TEMPLATE
        _BPF_TEMPLATE = _build_seccomp_template()  # fail here, loudly, rather than in every child
    if cfg.get("fd_paths"):
        _reroute_imports(cfg["fd_paths"])
    write_frame(PROTO_OUT, {"ready": True, "pid": os.getpid(), "uid": os.getuid(),
                            "python": sys.version.split()[0]})
    while True:
        batch = read_frame(PROTO_IN)
        if batch is None:
            return
        for task in batch["tasks"]:
            try:
                frame = run_task(task, cfg)
            except Exception as e:  # a zygote bug must not look like a program's verdict
                frame = {"id": task.get("id"), "zygote_error": repr(e)[:500]}
            write_frame(PROTO_OUT, frame)


if __name__ == "__main__":
    main()
