"""The suite's xdist order (tests/support/schedule.py): whole files, longest first, weights kept per run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import schedule, xla_env


def test_files_stay_together_and_the_longest_go_first(monkeypatch, tmp_path):
    monkeypatch.setattr(schedule, "MEASURED_FILE", tmp_path / "seconds.json")
    monkeypatch.setattr(schedule, "SECONDS_MEASURED", {"b.py": 5, "c.py": 50})
    items = ["a.py::1", "b.py::1", "a.py::2", "c.py::1", "d.py::1", "b.py::2"]
    ordered = schedule.longest_first(items, lambda item: item.split("::")[0])
    # c (50 s) then b (5 s), then the unmeasured files in collection order (a before d).
    assert ordered == ["c.py::1", "b.py::1", "b.py::2", "a.py::1", "a.py::2", "d.py::1"]


def test_a_local_measurement_overrides_the_committed_table(monkeypatch, tmp_path):
    monkeypatch.setattr(schedule, "MEASURED_FILE", tmp_path / "cache" / "seconds.json")
    monkeypatch.setattr(schedule, "SECONDS_MEASURED", {"b.py": 5, "c.py": 50})
    schedule.record_file_seconds([("a.py", 30.0), ("a.py", 40.0), ("c.py", 1.0)])
    assert json.loads(schedule.MEASURED_FILE.read_text()) == {"a.py": 70.0, "c.py": 1.0}
    schedule.record_file_seconds([("d.py", 2.0)])  # later runs merge, they do not forget
    assert schedule.file_seconds() == {"a.py": 70.0, "b.py": 5, "c.py": 1.0, "d.py": 2.0}
    ordered = schedule.longest_first(["c.py::x", "b.py::x", "a.py::x"], lambda item: item.split("::")[0])
    assert ordered == ["a.py::x", "b.py::x", "c.py::x"]
    schedule.MEASURED_FILE.write_text("not json")
    assert schedule.file_seconds() == {"b.py": 5, "c.py": 50}  # an unreadable file falls back to the table


def test_every_weighted_file_exists():
    """A test file that moves (as the suite's own tests did, from tests/trainer to tests/suite) must take its
    weight along: a stale path is silently weightless and its file drops to the end of the order."""
    repo = Path(__file__).resolve().parents[2]
    assert not [p for p in schedule.SECONDS_MEASURED if not (repo / p).is_file()]


def test_the_makefiles_xdist_options_keep_each_file_on_one_worker(tmp_path):
    """Runs pytest with `make test`'s own distribution options on two throwaway files of four tests:
    every test of a file must report the same worker (module fixtures are built once per file)."""
    repo = Path(__file__).resolve().parents[2]
    options = re.search(r"^PYTEST_PARALLEL = (.*)$", (repo / "Makefile").read_text(), re.M).group(1)
    options = re.sub(r"-n \S+", "-n 2", options).split()
    out = tmp_path / "workers.txt"
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(
            "import os, time, pytest\n"
            "@pytest.mark.parametrize('i', range(4))\n"
            "def test_x(i):\n"
            "    time.sleep(0.05)\n"
            f"    open({str(out)!r}, 'a').write('{name} ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(tmp_path), *options, str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    seen: dict[str, set[str]] = {}
    for file, worker in (line.split() for line in out.read_text().splitlines()):
        seen.setdefault(file, set()).add(worker)
    assert sorted(seen) == ["test_one.py", "test_two.py"]
    assert all(len(workers) == 1 for workers in seen.values()), seen


def test_the_test_xla_flags_are_all_read():
    """XLA ignores everything after a bare word in XLA_FLAGS; the device-count flag comes first and the
    rest after it, so a fake device count that takes effect does not prove the rest does: check the words."""
    words = xla_env.xla_flags(devices=4).split()
    assert words[0] == "--xla_force_host_platform_device_count=4"
    assert all(w.startswith("--") and "=" in w for w in words), words
