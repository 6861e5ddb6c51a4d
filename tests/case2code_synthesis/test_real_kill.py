"""SIGKILL a real synthesis process in the middle of a sandbox pass, restart it, and check the journal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from case2code_finetune.jsonl_io import read_jsonl

SLOW = "\n\n".join(f'''def slow_mod_{k}(n: int) -> int:
    total = 0
    for i in range(150000 + n):
        total += i % {k + 3}
    return total + n
''' for k in range(8))


def _cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "case2code_finetune.synthesize", "--out", str(out), "--source", str(src),
            "--no_decontaminate", "--min_test", "1", "--workers", "1", "--wall_s", "2"]


@pytest.mark.slow
def test_sigkill_mid_pass_then_resume(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "slow.py").write_text(SLOW)
    out = tmp_path / "out"
    journal = out / "work" / "pass_a.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(_cmd(src, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line)["task_id"] for line in journal.read_text().splitlines() if line.endswith("}")]
    assert before and not (out / "funnel.json").exists() and not (out / "functions.jsonl").exists()
    done = subprocess.run(_cmd(src, out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = [r["task_id"] for r in read_jsonl(journal) if "task_id" in r]
    assert after[:len(before)] == before            # nothing finished was lost or redone
    assert len(after) == len(set(after)) == 8       # every function ran exactly once in pass A
    kept = {r["func_name"] for r in read_jsonl(out / "functions.jsonl")}
    assert kept == {f"slow_mod_{k}" for k in range(8)}
    assert "Case2Code synthesis funnel" in done.stdout
