"""The judge and the scorer on mutated gold programs whose true verdicts this test computes on its own,
on forged markers, patched json/repr and crashing completions, and the score CLI end to end."""
import json
import re

import pytest

from evals.case2code.judge import judge
from evals.case2code.scoring import score
from evals.execution import Limits


def _canon(value) -> str:
    return json.dumps(repr(value))


@pytest.fixture(scope="module")
def rotate_row(official_rows):
    """command_R(num) = num % 10 * 1000 + num // 10: simple enough to recompute here without its code."""
    row = next(r for r in official_rows if r["func_name"] == "command_R" and "num % 10 * 1000" in r["code"])
    inputs = [int(x) for x in re.findall(r"dict\(num=(-?\d+)\)", row["example_str"])]
    assert len(inputs) == len(row["example_outputs"])
    assert all(o == {"return": _canon(n % 10 * 1000 + n // 10)} for n, o in zip(inputs, row["example_outputs"]))
    return row, inputs


def _one(pool, row, code, **kw):
    return next(judge(pool, {row["id"]: row}, [{"id": row["id"], "completion": f"```python\n{code}\n```", **kw}]))


MUTANTS = {  # name: (source, the function the mutant computes, written here independently)
    "gold_renamed": ("def command_R(num):\n    n = num\n    return n % 10 * 1000 + n // 10",
                     lambda n: n % 10 * 1000 + n // 10),
    "times_100": ("def command_R(num):\n    return num % 10 * 100 + num // 10", lambda n: n % 10 * 100 + n // 10),
    "no_carry": ("def command_R(num):\n    return num // 10", lambda n: n // 10),
    "zero_special": ("def command_R(num):\n    if num == 0:\n        return -1\n    return num % 10 * 1000 + num // 10",
                     lambda n: -1 if n == 0 else n % 10 * 1000 + n // 10),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutated_gold_programs(pool, rotate_row, name):
    row, inputs = rotate_row
    code, truth = MUTANTS[name]
    want = [{"return": _canon(truth(n))} == o for n, o in zip(inputs, row["example_outputs"])]
    v = _one(pool, row, code)
    assert v["verdicts"] == want
    assert v["n_matched"] == sum(want) and v["passed"] == all(want)
    assert v["status"] == ("passed" if all(want) else "wrong_output")


def test_cheats_and_crashes_never_pass(pool, rotate_row):
    row, inputs = rotate_row
    gold = [o["return"] for o in row["example_outputs"]]
    markers = ("############ <|EXAMPLE OUTPUT START|> ############\n"
               + "".join(f"<|OUT|> <|RETURN|> {g}\n" for g in gold)
               + "############ <|EXAMPLE OUTPUT END|> ############")
    cheats = {
        "forged_markers": f"def command_R(num):\n    print({markers!r})\n    return 'x'",
        "forged_at_import": f"print({markers!r})\nimport sys\nsys.exit(0)",
        "patched_repr_json": ("import builtins, json\nbuiltins.repr = lambda x: " + repr(gold[0]) +
                              "\njson.dumps = lambda x, **k: " + repr(gold[0]) + "\n"
                              "def command_R(num):\n    return object()"),
        "exit_in_call": "import os\ndef command_R(num):\n    os._exit(0)",
        "segfault": "import ctypes\ndef command_R(num):\n    return ctypes.string_at(0)",
        "exit_at_import": "import os\nos._exit(3)\ndef command_R(num):\n    return 0",
        "recursion": "def command_R(num):\n    return command_R(num)",
        "spin": "def command_R(num):\n    while True:\n        pass",
    }
    by_id = {row["id"]: row}
    answers = [{"id": row["id"], "completion": f"```python\n{c}\n```", "sample": i} for i, c in enumerate(cheats.values())]
    quick = Limits(wall_s=1.0, program_wall_s=2.0)   # the same judge, a shorter budget for the spinner
    verdicts = {v["sample"]: v for v in judge(pool, by_id, answers, limits=quick)}
    for i, name in enumerate(cheats):
        v = verdicts[i]
        assert not v["passed"] and v["n_matched"] == 0, (name, v["status"])
    assert verdicts[list(cheats).index("spin")]["status"] == "timeout"
    assert verdicts[list(cheats).index("segfault")]["status"] == "crash"


def test_truncated_and_empty_answers(pool, rotate_row):
    row, _ = rotate_row
    gold_answer = row["output"]
    assert _one(pool, row, "", completion=gold_answer)["passed"]
    assert _one(pool, row, "", completion=gold_answer, finish_reason="length")["status"] == "truncated"
    assert _one(pool, row, "", completion="```python\n\n```")["status"] == "no_code"
    assert _one(pool, row, "", completion="```python\ndef command_R(num)\n    return 1\n```")["status"] == "syntax_error"


def test_score_cli(tmp_path, official_rows, capsys):
    from evals.case2code.cli import main
    rows = official_rows[:3]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps({"id": "x", "prompt": "p"}) + "\n")
    preds = tmp_path / "preds.jsonl"
    lines = [{"id": rows[0]["id"], "completion": rows[0]["output"]},
             {"id": rows[0]["id"], "completion": "```python\ndef nope(): pass\n```"},
             {"id": rows[1]["id"], "completion": "no code here"},
             # a bare fence (no "python" tag): the official extractor takes its block, so the gold code passes
             {"id": rows[2]["id"], "completion": f"Here it is:\n```\n{rows[2]['code']}\n```\nDone."},
             {"id": "unknown-id", "completion": "x"}]
    preds.write_text("".join(json.dumps(p) + "\n" for p in lines) + "{not json\n")
    out = tmp_path / "v.jsonl"
    assert main(["score", "--data", str(data), "--predictions", str(preds), "--out", str(out), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    verdicts = [json.loads(l) for l in out.read_text().splitlines()]
    assert [(v["id"], v["sample"], v["passed"]) for v in verdicts] == [
        (rows[0]["id"], 0, True), (rows[0]["id"], 1, False), (rows[1]["id"], 0, False), (rows[2]["id"], 0, True)]
    assert [v["status"] for v in verdicts][1:3] == ["wrong_output", "syntax_error"]
    assert set(verdicts[0]) >= {"id", "passed", "n_inputs", "n_matched", "status"}
    assert summary["n_rows"] == 3 and summary["n_predictions"] == 4
    assert summary["extraction"] == {"fenced": 2, "whole": 1, "bare_fenced": 1}
    assert summary["unknown_ids"] == 1 and summary["malformed_lines"] == 1 and summary["skipped_data_rows"] == 1
    assert summary["pass_at_1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert "missing" not in summary["counts_by_status"]  # every row has a prediction
    assert 0 < summary["gold_ceiling"] <= 1


def test_score_cli_refuses_a_non_jsonl_file(tmp_path, official_rows):
    from evals.case2code.cli import main
    from patch_training.errors import UserError
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(official_rows[0]) + "\n")
    preds = tmp_path / "preds.csv"
    preds.write_text("id,completion\na,b\n")
    with pytest.raises(UserError, match="no line is a prediction"):
        main(["score", "--data", str(data), "--predictions", str(preds), "--out", str(tmp_path / "v.jsonl")])
