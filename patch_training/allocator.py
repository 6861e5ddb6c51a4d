"""Which malloc a CPU training process runs with: find tcmalloc and restart a command under it.

Why it matters: XLA:CPU allocates every temporary buffer of a step when the step runs and frees it
at the end. glibc's malloc hands blocks above its mmap threshold (32 MiB at most) back to the kernel
on free, so the next step faults them in again. Measured on the `small` model's bf16 training step
(8 x 512 tokens, 2 cores): ~560k minor page faults and ~1 s of kernel time per step under glibc, none
under tcmalloc, which keeps freed memory for reuse (same losses). PyTorch's CPU tuning guides give the
same advice for the same reason; in `benchmarks.train_throughput` both sides share the process, so
both get the same allocator.

`python -m patch_training.allocator` prints the tcmalloc library to preload (nothing if none is
installed; scripts/setup.sh installs Debian's libtcmalloc-minimal4); scripts/demo.sh uses it.
"""
from __future__ import annotations

import os
import sys

TCMALLOC_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib")
# Any of these in LD_PRELOAD means the user already chose an allocator: we leave it alone.
_ALLOCATOR_MARKERS = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc(search_dirs: tuple[str, ...] = SEARCH_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    for directory in search_dirs:
        for name in TCMALLOC_LIBRARIES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def preloaded_allocator(env: dict[str, str] | os._Environ = os.environ) -> str | None:
    """The malloc replacement named in LD_PRELOAD (tcmalloc, jemalloc, mimalloc), if any."""
    for entry in env.get("LD_PRELOAD", "").replace(":", " ").split():
        if any(marker in os.path.basename(entry) for marker in _ALLOCATOR_MARKERS):
            return entry
    return None


def env_with_tcmalloc(env: dict[str, str] | os._Environ = os.environ,
                      library: str | None = None) -> dict[str, str] | None:
    """A copy of `env` that preloads tcmalloc, or None when there is nothing to change (an
    allocator is already preloaded, or tcmalloc is not installed)."""
    if preloaded_allocator(env):
        return None
    library = library or find_tcmalloc()
    if library is None:
        return None
    preload = env.get("LD_PRELOAD", "")
    return dict(env, LD_PRELOAD=f"{library} {preload}".strip())


def reexec_module(module: str, argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with `python -m module *argv` under `env` (same pid; does not return)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def reexec_under_tcmalloc(module: str, argv: list[str]) -> None:
    """Restart this process as `python -m module *argv` with tcmalloc preloaded.

    Returns (doing nothing) when an allocator is already preloaded or tcmalloc is not installed;
    otherwise it does not return.
    """
    env = env_with_tcmalloc()
    if env is not None:
        reexec_module(module, argv, env)


def cpu_training_hint(env: dict[str, str] | os._Environ = os.environ,
                      library: str | None = None) -> str | None:
    """One line for a CPU training run on glibc's malloc saying how to run it on tcmalloc (None when
    an allocator is already preloaded)."""
    if preloaded_allocator(env):
        return None
    library = library or find_tcmalloc()
    fix = (f"start it with LD_PRELOAD={library}" if library
           else "install tcmalloc (Debian: libtcmalloc-minimal4) and preload it")
    return (f"CPU training on glibc's malloc re-faults XLA's buffers every step (~25% of the small model's bf16 "
            f"step on 2 cores); {fix} (scripts/demo.sh does; see patch_training/allocator.py)")


if __name__ == "__main__":
    found = find_tcmalloc()
    if found:
        print(found)
