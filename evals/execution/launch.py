"""How a zygote is started at each isolation tier (T1 bubblewrap, T2 uid+rlimits+seccomp, T3 rlimits only).

T1 runs bubblewrap as a non-root uid, so the user namespace maps the sandbox to that uid (RLIMIT_NPROC is not
enforced for root, even root inside a user namespace). When the harness is root and the interpreter lives
somewhere that uid cannot traverse (e.g. /root/.pyenv), we first bind those directories onto world-readable
staging points inside a *private* mount namespace (`unshare --mount`), then drop privileges with `setpriv`,
then exec bwrap. Nothing is mounted in the host's namespace and nothing on disk changes mode.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import sys
import tempfile
import types
from pathlib import Path

ZYGOTE = Path(__file__).with_name("zygote.py")
SANDBOX_UID_BASE = 61000  # sandbox uids: 61000 .. 61000 + SANDBOX_UID_COUNT - 1 (never a real account)
SANDBOX_UID_COUNT = 1000
# Leases on sandbox uids, shared by every harness process on the machine (root only: only root drops to them).
UID_LEASE_DIR = "/tmp/evals-sandbox-uid-leases"
# Read-only: a pool's own settings (its hash seed) go through `sandbox_env`, never by editing this table.
SANDBOX_ENV = types.MappingProxyType({
    "PYTHONHASHSEED": "0", "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp",
    "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
})
PREIMPORT = ["math", "re", "collections", "itertools", "functools", "string", "heapq", "bisect", "operator",
             "datetime", "decimal", "fractions", "statistics", "copy", "typing", "dataclasses", "numpy"]
TMPFS_SIZE = 64 << 20


def _world_traversable(path: Path) -> bool:
    """True when every component of `path` is searchable (and the leaf readable) by any uid."""
    p = Path("/")
    for part in path.parts[1:]:
        p = p / part
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def interpreter_dirs() -> list[Path]:
    """Directories the sandboxed interpreter needs: the base install and the venv (site-packages)."""
    dirs = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return sorted(dirs)


def python_executable() -> str:
    return str(Path(sys.prefix) / "bin" / "python") if sys.prefix != sys.base_prefix else sys.executable


def sandbox_env(hash_seed: int = 0, **overrides: str) -> dict[str, str]:
    """The whole environment of a zygote (it never inherits the harness's): SANDBOX_ENV with this pool's
    string-hash seed, plus `overrides` (e.g. HOME)."""
    return dict(SANDBOX_ENV, PYTHONHASHSEED=str(int(hash_seed)), **overrides)


def zygote_config(*, seccomp: bool, kill_all: bool, drop_uid: int | None, tmp: str,
                  fd_paths: list[str] | None = None) -> str:
    return json.dumps({"seccomp": seccomp, "kill_all": kill_all, "drop_uid": drop_uid, "tmp": tmp,
                       "preimport": PREIMPORT, "fd_paths": fd_paths or []})


class UidLease:
    """Exclusive use of one sandbox uid by this process, across every harness process on the machine.

    A uid is a sandbox's identity: its RLIMIT_NPROC budget, the processes a sweep kills, the files it may
    own. Two pools (two eval runs, two test workers) must never share one, so each zygote start takes a
    uid whose lock file it can flock; the kernel drops the lock when the holder exits, however it exits,
    so a killed harness never leaves a uid taken. `preferred` (base + worker index) is tried first.
    """

    def __init__(self, preferred: int):
        _check_lease_dir()
        span = range(SANDBOX_UID_COUNT)
        start = min(max(preferred - SANDBOX_UID_BASE, 0), SANDBOX_UID_COUNT - 1)
        for offset in span:
            uid = SANDBOX_UID_BASE + (start + offset) % SANDBOX_UID_COUNT
            fd = os.open(os.path.join(UID_LEASE_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise PermissionError(f"all {SANDBOX_UID_COUNT} sandbox uids from {SANDBOX_UID_BASE} are leased "
                              f"(lock files in {UID_LEASE_DIR})")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _check_lease_dir() -> None:
    """The lease directory must be root's own (fail closed: anyone else could hand out uids)."""
    try:
        os.mkdir(UID_LEASE_DIR, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(UID_LEASE_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise PermissionError(f"{UID_LEASE_DIR} is not a private directory of uid {os.geteuid()}; "
                              "refusing to lease sandbox uids through it")


class Launch:
    """A command line plus what it holds: a staging directory and a uid lease (both let go by `cleanup`)."""

    def __init__(self, argv: list[str], env: dict, cwd: str | None = None, stage: str | None = None,
                 lease: UidLease | None = None):
        self.argv, self.env, self.cwd, self.stage, self.lease = argv, env, cwd, stage, lease

    @property
    def uid(self) -> int | None:
        """The sandbox uid this launch runs programs as (None when it runs as the harness's own uid)."""
        return self.lease.uid if self.lease is not None else None

    def cleanup(self) -> None:
        if self.stage:
            shutil.rmtree(self.stage, ignore_errors=True)
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def t1_launch(worker_index: int, *, seccomp: bool = True, hash_seed: int = 0) -> Launch:
    """bubblewrap: no network, own pid/ipc/uts/mount namespaces, tmpfs /tmp, read-only narrow filesystem."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise FileNotFoundError("bwrap not found")
    is_root = os.geteuid() == 0
    lease = UidLease(SANDBOX_UID_BASE + worker_index) if is_root else None
    uid = lease.uid if lease is not None else os.getuid()
    binds: list[tuple[str, str]] = []
    mounts: list[tuple[str, str]] = []  # (source, staging point) done as root in a private mount ns
    stage = None
    needed = interpreter_dirs() + [ZYGOTE.parent.resolve()]
    for d in needed:
        if is_root and not _world_traversable(d):
            if stage is None:
                stage = tempfile.mkdtemp(prefix="sbx-stage-")
                os.chmod(stage, 0o755)
            point = os.path.join(stage, str(len(mounts)))
            os.mkdir(point, 0o755)
            mounts.append((str(d), point))
            binds.append((point, str(d)))
        else:
            binds.append((str(d), str(d)))
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin", "lib32"):
        if os.path.islink("/" + link):
            argv += ["--symlink", os.readlink("/" + link), "/" + link]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    # The tmpfs goes on /tmp *before* the binds: bwrap applies mounts in order, and a checkout or
    # virtualenv that lives under /tmp (a CI clone, say) would otherwise be hidden by it.
    argv += ["--size", str(TMPFS_SIZE), "--tmpfs", "/tmp"]
    for src, dst in binds:
        argv += ["--ro-bind", src, dst]
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--hostname", "sandbox"]
    for k, v in sandbox_env(hash_seed).items():
        argv += ["--setenv", k, v]
    argv += [python_executable(), "-s", "-B", str(ZYGOTE.resolve()),
             zygote_config(seccomp=seccomp, kill_all=True, drop_uid=None, tmp="/tmp")]
    if is_root:
        script = "set -e\n" + "".join(f'mount --bind "${i*2+1}" "${i*2+2}"\n' for i in range(len(mounts)))
        script += f'shift {2 * len(mounts)}\nexec "$@"\n'
        flat = [x for pair in mounts for x in pair]
        argv = (["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sbx"] + flat +
                ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all"] + argv)
    return Launch(argv, env={"PATH": "/usr/bin:/bin"}, stage=stage, lease=lease)


def t2_launch(worker_index: int, *, hash_seed: int = 0) -> Launch:
    """No namespaces: the zygote (root) forks children that drop to a private uid, in a private 0700 cwd.

    Interpreter directories that uid cannot traverse (a pyenv under /root) are reached through fds the
    zygote opens as root (see zygote._reroute_imports), so nothing on disk changes mode."""
    if os.geteuid() != 0:
        raise PermissionError("tier T2 needs root (to drop each child to a private uid)")
    lease = UidLease(SANDBOX_UID_BASE + worker_index)
    uid = lease.uid
    # Root-owned and traverse-only: the zygote makes a fresh 0700 dir owned by `uid` inside it per task, and
    # the sweep of files `uid` leaves in /tmp never touches the worker's own home.
    home = tempfile.mkdtemp(prefix=f"sbx-t2-{worker_index}-")
    os.chmod(home, 0o711)
    hidden = [str(d) for d in interpreter_dirs() + [ZYGOTE.parent.resolve()] if not _world_traversable(d)]
    argv = [python_executable(), "-s", "-B", str(ZYGOTE.resolve()),
            zygote_config(seccomp=True, kill_all=False, drop_uid=uid, tmp=home, fd_paths=hidden)]
    return Launch(argv, env=sandbox_env(hash_seed, HOME=home), cwd=home, stage=home, lease=lease)


def t3_launch(worker_index: int, *, seccomp: bool, hash_seed: int = 0) -> Launch:
    """Opt-in only: rlimits (+ seccomp when it loads) as the harness's own uid."""
    home = tempfile.mkdtemp(prefix=f"sbx-t3-{worker_index}-")
    argv = [python_executable(), "-s", "-B", str(ZYGOTE.resolve()),
            zygote_config(seccomp=seccomp, kill_all=False, drop_uid=None, tmp=home)]
    return Launch(argv, env=sandbox_env(hash_seed, HOME=home), cwd=home, stage=home)


def launch_for(tier: str, worker_index: int, *, seccomp: bool = True, hash_seed: int = 0) -> Launch:
    if tier == "T1":
        return t1_launch(worker_index, seccomp=seccomp, hash_seed=hash_seed)
    if tier == "T2":
        return t2_launch(worker_index, hash_seed=hash_seed)
    if tier == "T3":
        return t3_launch(worker_index, seccomp=seccomp, hash_seed=hash_seed)
    raise ValueError(f"unknown tier {tier!r}")
