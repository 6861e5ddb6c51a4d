"""The suite's xdist order (tests/support/schedule.py): whole files, longest first, weights kept per run."""
from __future__ import annotations

import json

from tests.support import schedule


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
