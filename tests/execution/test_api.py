"""Probe (row 44), CLI, journal resume, script mode, bad input, canonical comparison."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evals.execution import BadExpected, Program, outputs_match, parse_expected, probe_tier
from evals.execution.journal import Journal

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_44_probe_tier_on_ci():
    info = probe_tier()
    if os.environ.get("CI") == "true":
        assert info["tier"] == "T1", info  # fails, never skips, when CI is below T1
    assert info["tier"] in ("T1", "T2", "T3")
    if info["tier"] == "T1":
        c = info["checks"]
        assert c["uid"] != 0 and c["forks"] == 0 and not c["wrote_outside"] and not c["connected"]


def test_bad_inputs_are_per_program(pool):
    progs = [Program("parse", "def f(:\n", "f", [{"kwargs": {}}]),
             Program("noentry", "def g():\n    return 1\n", "f", [{"kwargs": {}}]),
             Program("notdict", "def f(**k):\n    return k\n", "f", [{"kwargs_src": "[1, 2]"}, {"kwargs_src": "dict(a=(1,))"}]),
             Program("evalfail", "def f(**k):\n    return k\n", "f", [{"kwargs_src": "1/0"}])]
    res = {r.task_id: r for r in pool.run(progs)}
    assert res["parse"].calls[0]["exc"] == "SyntaxError"
    assert res["noentry"].calls[0]["output"] == json.dumps("<class 'NameError'>: name 'f' is not defined")
    assert res["notdict"].calls[0]["status"] == "error" and "not a dict" in res["notdict"].calls[0]["note"]
    assert res["notdict"].calls[1]["output"] == json.dumps(repr({"a": (1,)}))
    assert "ZeroDivisionError" in res["evalfail"].calls[0]["note"]
    with pytest.raises(BadExpected):
        outputs_match(res["notdict"].calls[1], 5)
    with pytest.raises(BadExpected):
        parse_expected("not json")


def test_case2code_error_format(pool):
    r = pool.run_one(Program("e", "def f(s):\n    return s[10]\n", "f", [{"kwargs": {"s": "ab"}}]))
    gold = {"error": '<|EXCEPTION|> "<class \'IndexError\'>: string index out of range"'}
    assert outputs_match(r.calls[0], gold)
    assert outputs_match(r.calls[0], {"error": 'printed first\n' + gold["error"]})  # gold stdout prefix
    assert not outputs_match(r.calls[0], {"return": json.dumps("'b'")})


def test_float_tolerance_in_parent(pool):
    r = pool.run_one(Program("fl", "def f():\n    return [0.1 + 0.2, 1]\n", "f", [{"kwargs": {}}]))
    assert not outputs_match(r.calls[0], json.dumps("[0.3, 1]"))
    assert outputs_match(r.calls[0], json.dumps("[0.3, 1]"), float_tol=1e-9)


def test_script_mode_capped_stdout(pool):
    ok = pool.run_one(Program("s", "for i in range(3): print(i)\n", mode="script"))
    assert ok.script["status"] == "ok" and ok.script["stdout"] == "0\n1\n2\n"
    flood = pool.run_one(Program("s2", "while True: print('x' * 1000)\n", mode="script"))
    assert flood.script["status"] == "output_too_large" and flood.script["stdout_truncated"]
    err = pool.run_one(Program("s3", "print('a')\nraise KeyError('k')\n", mode="script"))
    assert err.script["status"] == "error" and err.script["stdout"] == "a\n" and err.script["exc"] == "KeyError"


def test_journal_resume(pool, tmp_path):
    path = tmp_path / "j.jsonl"
    progs = [Program(f"p{i}", "def f(x):\n    return x * x\n", "f", [{"kwargs": {"x": i}}]) for i in range(40)]
    it = pool.run(progs, journal=path)
    first = [next(it) for _ in range(10)]
    it.close()  # interrupted
    with open(path, "ab") as f:
        f.write(b'{"task_id": "torn')  # killed mid-write
    done_before = {r.task_id for r in first}
    again = list(pool.run(progs, journal=path))
    assert len(again) == 40 and {r.task_id for r in again} == {p.task_id for p in progs}
    assert {r.task_id for r in again if r.from_journal} >= done_before
    assert all(r.calls[0]["output"] == json.dumps(str(int(r.task_id[1:]) ** 2)) for r in again)
    assert Journal(path).torn_lines == 1


def test_cli_check_and_probe(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("def f(x):\n    return x + 1\n")
    cases = tmp_path / "c.jsonl"
    cases.write_text('{"kwargs": {"x": 1}, "expected": "\\"2\\""}\n{"kwargs_src": "dict(x=1)", "expected": "\\"3\\""}\n')
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "evals.execution", "check", "--program", str(prog), "--cases",
                          str(cases)], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [r["match"] for r in rows] == [True, False] and rows[0]["status"] == "ok"
    p = subprocess.run([sys.executable, "-m", "evals.execution", "probe"], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=60)
    assert json.loads(p.stdout.splitlines()[-1])["tier"] in ("T1", "T2", "T3")
    bad = subprocess.run([sys.executable, "-m", "evals.execution", "check", "--program", str(tmp_path / "nope"),
                          "--cases", str(cases)], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "cannot read program" in bad.stderr
