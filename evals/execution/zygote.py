"""The sandbox-side worker ("zygote"): a long-lived interpreter that forks one child per program.

This file runs *inside* the sandbox (bubblewrap at T1), never in the harness. It uses only the standard
library and `pyseccomp`, reads length-prefixed JSON task batches on fd 0, and answers one length-prefixed
JSON frame per task on fd 1 (the format: protocol.py). The expected outputs never come here: the zygote only
reports what each call produced, and the trusted parent does the comparing.

Each child: own process group, every fd closed but its result pipe, stdio on /dev/null (or a capped pipe in
script mode), rlimits, a seccomp filter, `random.seed(0)`, then the candidate. It writes one JSON line per
call through serializers bound before the candidate ran, so monkeypatching `repr`/`json` cannot forge them.

Layout: framing; child hardening (seccomp, rlimits); the child after fork (`_fork_child` .. `_run_*`);
cleaning up after a child; the zygote reading a child's results and deciding each status (`run_task`); main.
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
import types

if __package__:  # imported by the harness (a test, a tool): the package's copy
    from evals.execution import protocol
else:  # started as a script in the sandbox: this directory is sys.path[0], the `evals` package is not there
    import protocol

PROTO_IN, PROTO_OUT = 200, 201  # the zygote's private copies of its harness pipes (fds 0/1 go to /dev/null)
FIRST_PATH_FD = 50  # T2 import-path fds (see _reroute_imports): below NOFILE (64); children keep these open
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
    return protocol.read_frame(lambda n: _read_exact(fd, n))


def write_frame(fd, obj):
    data = protocol.encode_frame(obj)
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

# ---------------------------------------------------------------- the child, after fork
# Whatever the child does after the candidate's code has run goes through names bound *before* it ran:
# locals, closures made by the `_child_*` factories, never this module's globals or `json`/`builtins`
# attributes looked up late. A program that patches those can still break its own report (it could also
# just exit), but not make a patched `repr`/`json` pass for its real output, and the next program is forked
# from the untouched zygote.
def _fork_child(task, start, cfg, workdir):
    """Fork a child for calls `start`..; -> (pid, result pipe, stdout pipe or None), read ends."""
    r, w = os.pipe()
    out_r = out_w = None
    if task.get("mode") == "script":
        out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _exit, _BaseException = os._exit, BaseException
        try:
            _harden_child(task, start, cfg, workdir, w, out_w)
            _child_main(task, start, protocol.RESULT_FD)
        except _BaseException:
            pass
        _exit(0)
    os.close(w)
    if out_w is not None:
        os.close(out_w)
    return pid, r, out_r


def _harden_child(task, start, cfg, workdir, result_w, stdout_w):
    """Between fork and the candidate: own process group and cwd, stdio, fds, uid, rlimits, seccomp."""
    os.setpgid(0, 0)
    os.chdir(workdir)
    _child_stdio(result_w, stdout_w)
    _close_other_fds(len(cfg.get("fd_paths") or ()))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if cfg.get("drop_uid") is not None:  # T2: the zygote itself may still be root
        _drop_to_uid(cfg["drop_uid"])
    _set_limits(task["limits"], task["n_calls"] - start)
    if cfg.get("seccomp"):
        _install_seccomp()
    sys.argv = ["<program>"]
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.stdin = open(0, "r", closefd=False)


def _child_stdio(result_w, stdout_w):
    """stdin/stderr on /dev/null, stdout on /dev/null or the capped script pipe, the result pipe on RESULT_FD."""
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(stdout_w if stdout_w is not None else null, 1)
    os.dup2(null, 2)
    os.dup2(result_w, protocol.RESULT_FD)


def _close_other_fds(n_path_fds):
    """Close every fd above RESULT_FD, except the T2 import-path fds when there are any."""
    first = protocol.RESULT_FD + 1
    if n_path_fds:
        os.closerange(first, FIRST_PATH_FD)
        os.closerange(FIRST_PATH_FD + n_path_fds, 1 << 16)
    else:
        os.closerange(first, 1 << 16)


def _drop_to_uid(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _child_main(task, start, wfd):
    """The hardened child's job: load the candidate, run calls `start`.. and report each on `wfd`."""
    out = _child_reporter(wfd, task["limits"]["output_cap"])
    load = _child_loader(task, out)
    call = _child_caller(task["entry"], out)
    _exit = os._exit
    random.seed(0)
    if task.get("compat") == "case2code":
        _case2code_environment()
    src = task.get("calls_src")
    if task.get("mode", "calls") == "script":
        _run_script(load, out)
    elif src is None:
        _run_listed_calls(task, start, load, call, out)
    else:
        # Case2Code `example_str`: source that defines `examples` (a list of kwargs dicts) and may use the
        # program's own names (`dict(x=formatr)`), so it runs *after* the program in the program's namespace.
        # A list means generation rounds: each round runs in a fresh namespace with a freshly loaded program,
        # as the original data pipeline did (one process per round).
        rounds = [src] if isinstance(src, str) else list(src)
        _run_example_rounds(task, start, rounds, not isinstance(src, str), load, _child_examples(out), call, out)
    _exit(0)


def _child_reporter(wfd, cap):
    """-> the child's only way to write result lines (their format: protocol.py), bound now."""
    _dumps, _write, _repr, _len, _type, _str = (json.dumps, os.write, builtins.repr, builtins.len, builtins.type,
                                                builtins.str)
    _BaseException, _SystemExit, _isinstance, _int, _sys = BaseException, SystemExit, builtins.isinstance, int, sys
    _sized = _SIZED_BUILTINS
    RETURN, ERROR_, TOO_LARGE, BAD_INPUT = (protocol.KIND_RETURN, protocol.KIND_ERROR, protocol.KIND_TOO_LARGE,
                                            protocol.KIND_BAD_INPUT)
    LOADED, LOAD_ERROR, FATAL, SCRIPT_EXIT = protocol.LOADED, protocol.LOAD_ERROR, protocol.FATAL, protocol.SCRIPT_EXIT

    def exc_text(e):
        try:
            msg = _str(e)
        except _BaseException:
            msg = "<unprintable>"
        return "%s: %s" % (_type(e), msg)

    def send(obj):
        data = (_dumps(obj) + "\n").encode()
        while data:
            data = data[_write(wfd, data):]

    def call_outcome(i, thunk):
        """Run one call and report its return value's repr, or the exception it raised."""
        try:
            value = thunk()
            # A builtin sequence/mapping of n items prints as at least n characters: refuse before building
            # a huge repr (`'x' * 10**8` would otherwise cost seconds and hundreds of MiB).
            if _type(value) in _sized and _len(value) > cap:
                send({"i": i, "kind": TOO_LARGE, "value": None, "exc": None})
                return
            try:
                text = _dumps(_repr(value))
            except _BaseException as e:  # a __repr__ that raises or returns a non-str
                send({"i": i, "kind": ERROR_, "value": _dumps(exc_text(e)), "exc": _type(e).__name__})
                return
            if _len(text) > cap:
                send({"i": i, "kind": TOO_LARGE, "value": None, "exc": None})
            else:
                send({"i": i, "kind": RETURN, "value": text, "exc": None})
        except _BaseException as e:
            text = _dumps(exc_text(e))
            send({"i": i, "kind": ERROR_, "value": text if _len(text) <= cap else None, "exc": _type(e).__name__})

    def bad_input(i, text):
        send({"i": i, "kind": BAD_INPUT, "value": text, "exc": None})

    def loaded():
        send({LOADED: True})

    def load_error(e, note=None):
        msg = {LOAD_ERROR: _dumps(exc_text(e)), "exc": _type(e).__name__}
        if note is not None:
            msg["note"] = note
        send(msg)

    def script_exit(e=None):
        """Script mode: it ran to the end (e is None) or stopped on `e` (sys.exit's code, else 1)."""
        try:
            _sys.stdout.flush()
        except _BaseException:
            pass
        if e is None:
            send({SCRIPT_EXIT: 0})
            return
        code = e.code if _isinstance(e, _SystemExit) else 1
        send({SCRIPT_EXIT: code if _isinstance(code, _int) else 1, "exc": _type(e).__name__,
              "value": _dumps(exc_text(e))[:cap]})

    def fatal(text):
        send({FATAL: text})

    return types.SimpleNamespace(exc_text=exc_text, call_outcome=call_outcome, bad_input=bad_input, loaded=loaded,
                                 load_error=load_error, script_exit=script_exit, fatal=fatal)


def _child_loader(task, out):
    """-> load(): a fresh namespace with the program run in it; if the program fails, report and exit."""
    source, script = task["source"], task.get("mode", "calls") == "script"
    _exec, _compile, _builtins, _BaseException, _exit = exec, compile, builtins, BaseException, os._exit
    first = [True]

    def load():
        ns = {"__builtins__": _builtins, "__name__": "__main__"}
        try:
            _exec(_compile(source, "<program>", "exec"), ns)
        except _BaseException as e:
            if script:
                out.script_exit(e)
            else:
                out.load_error(e)
            _exit(0)
        if first[0]:
            first[0] = False
            if not script:
                out.loaded()
        return ns

    return load


def _child_caller(entry, out):
    """-> call(i, kwargs, ns): call the program's entry point and report the outcome."""
    _isinstance, _dict, _type, _NameError = isinstance, dict, type, NameError

    def call(i, kw, ns):
        if not _isinstance(kw, _dict):
            out.bad_input(i, "kwargs are not a dict: %s" % _type(kw).__name__)
            return
        fn = ns.get(entry)  # looked up per call, as the reference harness did
        if fn is None:
            out.call_outcome(i, lambda: (_ for _ in ()).throw(_NameError("name %r is not defined" % entry)))
            return
        out.call_outcome(i, lambda: fn(**kw))

    return call


def _child_examples(out):
    """-> examples(ns, text, reset): run example source in the program's namespace -> its `examples` list;
    if that fails (it may name something the program lacks), report and exit."""
    _exec, _compile, _isinstance, _list, _type = exec, compile, isinstance, list, type
    _TypeError, _BaseException, _exit = TypeError, BaseException, os._exit

    def examples(ns, text, reset):
        if reset:
            ns["examples"] = []  # later rounds extend with `examples += [...]`
        try:
            _exec(_compile(text, "<examples>", "exec"), ns)
            got = ns["examples"]
            if not _isinstance(got, _list):
                raise _TypeError("`examples` is %s, not a list" % _type(got).__name__)
            return got
        except _BaseException as e:
            out.load_error(e, note="examples failed")
            _exit(0)

    return examples


def _run_script(load, out):
    load()
    out.script_exit()


def _run_listed_calls(task, start, load, call, out):
    """Calls listed in the task: `kwargs` as sent, or `kwargs_src` evaluated here, in the sandbox."""
    calls, n = task.get("calls") or [], task["n_calls"]
    _range, _eval, _builtins, _BaseException = range, eval, builtins, BaseException
    ns = load()
    for i in _range(start, n):
        if "kwargs_src" in calls[i]:
            try:
                kw = _eval(calls[i]["kwargs_src"], {"__builtins__": _builtins})
            except _BaseException as e:
                out.bad_input(i, "kwargs_src failed: " + out.exc_text(e)[:300])
                continue
        else:
            kw = calls[i]["kwargs"]
        call(i, kw, ns)


def _run_example_rounds(task, start, rounds, fresh, load, examples_of, call, out):
    """Calls defined by example source, round by round (a fresh namespace per round when `fresh`)."""
    n = task["n_calls"]
    _len, _range, _max, _enumerate = len, range, max, enumerate
    offset, ns = 0, None
    for k, text in _enumerate(rounds):
        if ns is None or fresh:
            ns = load()
        examples = examples_of(ns, text, fresh and k > 0)
        m = _len(examples)
        if offset + m > n:
            out.fatal("examples define more than the expected %d calls" % n)
            return
        for j in _range(_max(0, start - offset), m):
            call(offset + j, examples[j], ns)
        offset += m
    if offset != n:
        out.fatal("examples define %d calls, expected %d" % (offset, n))


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

# How a child that was killed by a signal ended (SIGKILL is ours, at a deadline).
SIGNAL_STATUS = {signal.SIGXCPU: protocol.TIMEOUT, signal.SIGKILL: protocol.TIMEOUT, signal.SIGSEGV: protocol.CRASH,
                 signal.SIGBUS: protocol.CRASH, signal.SIGABRT: protocol.CRASH, signal.SIGILL: protocol.CRASH,
                 signal.SIGFPE: protocol.CRASH, signal.SIGSYS: protocol.CRASH, signal.SIGXFSZ: protocol.ERROR}


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

# ---------------------------------------------------------------- the zygote: reading a child's results
# Why the zygote stopped listening to a child before both its pipes closed.
_STOP_TIMEOUT, _STOP_PROTOCOL, _STOP_TOO_LARGE = "timeout", "protocol", "too_large"


class _CapturedStdout:
    """Script mode: the child's stdout, kept up to the cap."""

    def __init__(self, cap):
        self.cap, self.chunks, self.size, self.over = cap, [], 0, False

    def add(self, chunk):
        """-> True once more than the cap has arrived."""
        self.chunks.append(chunk[:max(self.cap - self.size, 0)])
        self.size += len(chunk)
        if self.size > self.cap:
            self.over = True
        return self.over

    def text(self):
        return b"".join(self.chunks).decode("utf-8", "replace")


class _Program:
    """One task as the zygote tracks it across the children it forks for it."""

    def __init__(self, task):
        self.task, self.lim, self.n = task, task["limits"], task["n_calls"]
        self.script = task.get("mode") == "script"
        self.results = [None] * self.n
        self.next_call = 0        # the first call without a result: where a fresh child starts
        self.script_end = None    # script mode: the child's script_exit line
        self.stdout = _CapturedStdout(self.lim["stdout_cap"])
        self.deadline = time.monotonic() + self.lim["program_wall_s"]

    def finished(self):
        return self.next_call >= self.n and not (self.script and self.script_end is None)

    def load_deadline(self):
        return min(time.monotonic() + self.lim["load_wall_s"], self.deadline)

    def call_deadline(self):
        return min(time.monotonic() + self.lim["wall_s"], self.deadline)

    def settle(self, result):
        """Give the next call `result` and move on."""
        self.results[self.next_call] = result
        self.next_call += 1

    def settle_rest(self, result):
        """Every call still without a result shares `result` (a copy each)."""
        for i in range(self.next_call, self.n):
            self.results[i] = dict(result)
        self.next_call = self.n


class _Child:
    """One forked child as the zygote sees it."""

    def __init__(self, pid, result_fd, stdout_fd, deadline):
        self.pid, self.result_fd, self.stdout_fd, self.deadline = pid, result_fd, stdout_fd, deadline
        self.loaded = False       # its program's top level finished: call deadlines from now on
        self.pending = b""        # the start of a result line not yet complete
        self.read_total = 0
        self.stop_reason = None   # None: both pipes closed; else one of _STOP_*
        self.signal = None        # what killed it, once reaped


def _start_child(prog, cfg, workdir):
    pid, r, out_r = _fork_child(prog.task, prog.next_call, cfg, workdir)
    return _Child(pid, r, out_r, prog.load_deadline())


def _end_child(child, cfg, lim):
    """Kill whatever the child left, reap it (recording its signal) and close our ends of its pipes."""
    _kill_everything(child.pid, cfg, lim)
    status = _reap(child.pid)
    os.close(child.result_fd)
    if child.stdout_fd is not None:
        os.close(child.stdout_fd)
    child.signal = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None


def _listen(prog, child):
    """Take the child's result lines (and script stdout) until both pipes close or a reason to stop."""
    fds = [child.result_fd] + ([child.stdout_fd] if child.stdout_fd is not None else [])
    while fds:
        left = child.deadline - time.monotonic()
        if left <= 0:
            child.stop_reason = _STOP_TIMEOUT
            return
        ready, _, _ = select.select(fds, [], [], left)
        if child.stdout_fd is not None and child.stdout_fd in ready:
            chunk = os.read(child.stdout_fd, 65536)
            if not chunk:
                fds.remove(child.stdout_fd)
            elif prog.stdout.add(chunk):
                child.stop_reason = _STOP_TOO_LARGE
                return
        if child.result_fd not in ready:
            continue
        chunk = os.read(child.result_fd, 1 << 20)
        if not chunk:
            fds.remove(child.result_fd)
            if child.stdout_fd in fds:
                child.deadline = min(child.deadline, time.monotonic() + 0.2)  # let the last stdout arrive
            continue
        child.stop_reason = _take_lines(prog, child, chunk)
        if child.stop_reason:
            return


def _take_lines(prog, child, chunk):
    """Apply every complete line in `chunk`; -> a _STOP_* reason or None."""
    child.read_total += len(chunk)
    if child.read_total > prog.lim["task_output_cap"] + 65536:
        return _STOP_PROTOCOL
    child.pending += chunk
    while b"\n" in child.pending:
        line, child.pending = child.pending.split(b"\n", 1)
        try:
            msg = protocol.decode_line(line)
        except ValueError:
            return _STOP_PROTOCOL
        reason = _apply_line(prog, child, msg)
        if reason:
            return reason
    return None


def _apply_line(prog, child, msg):
    """One result line from the child; -> _STOP_PROTOCOL when it breaks the protocol, else None."""
    if prog.script:  # only how the script ended matters; its output is the stdout pipe
        if protocol.SCRIPT_EXIT in msg and prog.script_end is None:
            prog.script_end = msg
        return None
    if protocol.FATAL in msg:
        prog.settle_rest({"status": protocol.PROTOCOL_ERROR, "output": None, "exc": None,
                          "note": str(msg[protocol.FATAL])[:500]})
        return None
    if protocol.LOAD_ERROR in msg:
        prog.settle_rest({"status": protocol.ERROR, "output": msg[protocol.LOAD_ERROR], "exc": msg.get("exc"),
                          "note": str(msg.get("note") or "program failed at import")[:200]})
        return None
    if msg.get(protocol.LOADED):
        child.loaded = True
        child.deadline = prog.call_deadline()
        return None
    kind, value = msg.get("kind"), msg.get("value")
    if not child.loaded or msg.get("i") != prog.next_call or kind not in protocol.CALL_KINDS:
        return _STOP_PROTOCOL
    if value is not None and (not isinstance(value, str) or len(value) > prog.lim["output_cap"] + 64):
        return _STOP_PROTOCOL
    prog.settle(_reported_call(kind, value, msg.get("exc")))
    child.deadline = prog.call_deadline()
    return None


# ---------------------------------------------------------------- the zygote: deciding the status
def _reported_call(kind, value, exc):
    """The result of a call the child reported itself."""
    if kind == protocol.KIND_RETURN:
        return {"status": protocol.OK, "output": value, "exc": None}
    if kind == protocol.KIND_TOO_LARGE:
        return {"status": protocol.OUTPUT_TOO_LARGE, "output": None, "exc": "OutputTooLarge"}
    if kind == protocol.KIND_BAD_INPUT:
        return {"status": protocol.ERROR, "output": None, "exc": None, "note": value}
    exc = exc if isinstance(exc, str) else None
    return {"status": protocol.MEMORY if exc == "MemoryError" else protocol.ERROR, "output": value, "exc": exc}


def _killed_status(child):
    """A timeout (our deadline, SIGXCPU or our SIGKILL), another signal's status, or None if neither."""
    if child.stop_reason == _STOP_TIMEOUT or SIGNAL_STATUS.get(child.signal) == protocol.TIMEOUT:
        return protocol.TIMEOUT
    if child.signal is not None:
        return SIGNAL_STATUS.get(child.signal, protocol.CRASH)
    return None


def _unanswered_call(child):
    """The result of the call the child was on when it stopped without answering."""
    status = _killed_status(child)
    if child.stop_reason == _STOP_PROTOCOL:
        status, note = protocol.PROTOCOL_ERROR, "malformed or out-of-order result line"
    elif status is None:
        status, note = protocol.ERROR, "exited without a result"
    elif status == protocol.TIMEOUT:
        note = None
    else:
        note = "killed by signal %d" % child.signal
    return {"status": status, "output": None, "exc": None, "note": note}


def _after_child(prog, child):
    """Record what the ended child left unanswered; -> True when a fresh child should take over."""
    if prog.script:
        if prog.script_end is None:
            prog.script_end = {protocol.SCRIPT_EXIT: None}
        return False
    if prog.finished():
        return False
    result = _unanswered_call(child)
    if not child.loaded:  # died before the program finished importing: every remaining call shares the fate
        prog.settle_rest(result)
        return False
    prog.settle(result)
    if time.monotonic() >= prog.deadline:
        prog.settle_rest({"status": protocol.TIMEOUT, "output": None, "exc": None, "note": "program wall cap"})
        return False
    return True


def _script_result(prog, child):
    end = prog.script_end
    if prog.stdout.over:
        status = protocol.OUTPUT_TOO_LARGE
    else:
        status = _killed_status(child) or (protocol.OK if end.get(protocol.SCRIPT_EXIT) == 0 else protocol.ERROR)
    return {"status": status, "exit": end.get(protocol.SCRIPT_EXIT), "exc": end.get("exc"), "error": end.get("value"),
            "stdout": prog.stdout.text(), "stdout_truncated": prog.stdout.over}


def run_task(task, cfg):
    """Run one program on all its calls; fork a fresh child after a call that times out or crashes."""
    prog = _Program(task)
    workdir = os.path.join(cfg["tmp"], "task")
    child = None
    while not prog.finished():
        _fresh_workdir(workdir, cfg)
        child = _start_child(prog, cfg, workdir)
        _listen(prog, child)
        _end_child(child, cfg, prog.lim)
        if not _after_child(prog, child):
            break
    _fresh_workdir(workdir, cfg)  # nothing a program wrote outlives it
    frame = {"id": task["id"], "calls": prog.results}
    if prog.script:
        frame["script"] = _script_result(prog, child)
    return frame


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
    write_frame(PROTO_OUT, {protocol.READY: True, "pid": os.getpid(), "uid": os.getuid(),
                            "python": sys.version.split()[0]})
    while True:
        batch = read_frame(PROTO_IN)
        if batch is None:
            return
        for task in batch[protocol.TASKS]:
            try:
                frame = run_task(task, cfg)
            except Exception as e:  # a zygote bug must not look like a program's verdict
                frame = {"id": task.get("id"), protocol.ZYGOTE_ERROR: repr(e)[:500]}
            write_frame(PROTO_OUT, frame)


if __name__ == "__main__":
    main()
