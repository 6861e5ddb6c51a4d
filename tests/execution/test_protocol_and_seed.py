"""The protocol module stands alone (the zygote imports it inside the sandbox), and a pool's hash seed reaches
every interpreter of that pool, restarts included."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evals.execution import Limits, Program, SandboxPool, protocol
from patch_training.errors import UserError

EXECUTION_DIR = os.path.dirname(os.path.abspath(protocol.__file__))
HASH_PROGRAM = Program("hash", "def f():\n    return hash('abc'), list({'apple', 'banana', 'cherry', 'date', 'fig'})\n",
                       "f", [{"kwargs": {}}])


def test_protocol_imports_alone_like_the_zygote_does():
    """As in the sandbox: only this directory on the path, no site-packages, no `evals` package."""
    code = ("import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if 'site-packages' not in p]; "
            "import protocol; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('evals', 'jax', 'numpy', 'patch_training')))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, EXECUTION_DIR], capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_frames_round_trip_and_reject_oversized_or_malformed():
    def reader(data: bytes):
        pos = [0]

        def read_exact(n):
            chunk = data[pos[0]:pos[0] + n]
            pos[0] += n
            return chunk if len(chunk) == n else None
        return read_exact

    obj = {"tasks": [{"id": "a#0", "source": "x = 'é'"}]}
    assert protocol.read_frame(reader(protocol.encode_frame(obj))) == obj
    assert protocol.read_frame(reader(b"")) is None
    with pytest.raises(protocol.FrameError):
        protocol.read_frame(reader(protocol.FRAME_HEADER.pack(protocol.MAX_FRAME + 1)))
    with pytest.raises(protocol.FrameError):
        protocol.read_frame(reader(protocol.FRAME_HEADER.pack(3) + b"{x}"))


def test_worst_status_follows_severity():
    assert protocol.worst_status(["ok", "error", "timeout"]) == "timeout"
    assert protocol.worst_status(["ok", "worker_died", "crash"]) == "worker_died"
    assert protocol.worst_status([]) == "ok"


def _hash_under(seed: int) -> int:
    """What a plain interpreter with PYTHONHASHSEED=seed says (trusted code, run here; not -I, which ignores it)."""
    out = subprocess.run([sys.executable, "-S", "-c", "print(hash('abc'))"], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": str(seed)}, check=True, timeout=30)
    return int(out.stdout)


def test_hash_seed_reaches_the_pool_and_its_restarts(pool):
    default = pool.run_one(HASH_PROGRAM).calls[0]
    with SandboxPool(1, limits=Limits(wall_s=1.0), hash_seed=0) as same, \
            SandboxPool(1, limits=Limits(wall_s=1.0), hash_seed=7) as other:
        same_out = same.run_one(HASH_PROGRAM).calls[0]
        before = other.run_one(HASH_PROGRAM).calls[0]
        other.restart_worker(0)
        after = other.run_one(HASH_PROGRAM).calls[0]
    assert default["status"] == same_out["status"] == before["status"] == "ok"
    # The default is seed 0, the same seed gives the same output, another one a different hash and set order.
    assert same_out["output"] == default["output"]
    assert before["output"] != default["output"]
    assert after["output"] == before["output"]
    assert json.loads(before["output"]).startswith(f"({_hash_under(7)}, ")
    assert json.loads(default["output"]).startswith(f"({_hash_under(0)}, ")


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.5, "1", True])
def test_hash_seed_out_of_range_is_a_user_error(seed):
    with pytest.raises(UserError, match="hash_seed"):
        SandboxPool(1, hash_seed=seed)
