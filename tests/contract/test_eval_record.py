"""EvalRecord: a round trip keeps every field and the column order; a broken record fails with one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from patch_training.contract.records import SCHEMA_VERSION, EvalRecord
from patch_training.errors import UserError


def _record(**over) -> EvalRecord:
    fields = dict(eval="case2code", model_name="patch", model_fingerprint="f" * 16, data_path="/d/test.jsonl",
                  data_hash="a" * 16, config={"max_new_tokens": 48, "sampling": {"temperature": 0.0}},
                  summary={"pass_at_1": np.float64(0.25), "n_rows": np.int64(4)},
                  tables={"statuses": [{"status": "passed", "answers": 1}, {"status": "truncated", "answers": 3}]},
                  items_path="samples.jsonl", commit="c0ffee")
    fields.update(over)
    return EvalRecord.create(**fields)


def test_round_trip_keeps_fields_types_and_column_order(tmp_path):
    rec = _record(tables={"cells": [{"z_last": 1, "a_first": 0.5}]})
    path = rec.write(tmp_path / "r" / "record.json")
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and list(raw["tables"]["cells"][0]) == ["z_last", "a_first"]
    back = EvalRecord.read(path)
    assert back == rec
    assert type(back.summary["n_rows"]) is int and back.summary["pass_at_1"] == 0.25   # numpy made plain
    assert back.git_commit == "c0ffee" and back.versions["python"]
    assert back.table("cells") == [{"z_last": 1, "a_first": 0.5}] and back.table("absent") == []


def test_create_fills_this_checkouts_commit():
    assert _record(commit=None).git_commit     # the worktree is a git checkout


@pytest.mark.parametrize("edit,match", [
    (lambda r: r.pop("data_hash"), r"misses field\(s\) data_hash$"),
    (lambda r: r.pop("summary") and r.pop("tables"), r"misses field\(s\) summary, tables$"),
    (lambda r: r.update(schema_version=0), "schema_version 0, this code reads 1"),
    (lambda r: r.update(surprise=1), r"unknown field\(s\) surprise"),
    (lambda r: r["summary"].update(by_set={"a": 1}), "summary holds non-scalar value.* by_set"),
    (lambda r: r["tables"].update(statuses=[{"status": ["x"]}]), "table 'statuses' row 0 holds non-scalar cell"),
    (lambda r: r["tables"].update(statuses="| a | b |"), "table 'statuses' is not a list of row objects"),
    (lambda r: r.update(eval=""), "has no eval name"),
])
def test_a_broken_record_fails_with_one_line_naming_the_file(tmp_path, edit, match):
    raw = _record().to_json()
    edit(raw)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=match) as e:
        EvalRecord.read(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_unreadable_or_absent_records_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no eval record there"):
        EvalRecord.read(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        EvalRecord.read(tmp_path / "bad.json")


def test_write_refuses_a_nested_summary(tmp_path):
    rec = _record()
    rec.summary["gold"] = {"passed": 1}
    with pytest.raises(UserError, match="non-scalar"):
        rec.write(tmp_path / "record.json")
    assert not (tmp_path / "record.json").exists()
