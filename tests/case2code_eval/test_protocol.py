"""The official extractor on real completion shapes, the prompt, and pass@k against hand-computed cases."""
import json

import pytest

from evals.case2code.passk import first_k_pass, summarize, unbiased_pass_at_k
from evals.case2code.protocol import eval_prompt, extract_code

FN = "def f(x):\n    return x + 1"


@pytest.mark.parametrize("answer,code,how", [
    (f"The function is:\n\n```python\n{FN}\n\n```", FN, "fenced"),            # the gold answers' shape
    (f"Sure! Here it is:\n```python\n{FN}\n```\nIt adds one.", FN, "fenced"),
    (f"```python\r\n{FN}\r\n```", FN, "fenced"),
    (f"```python3\n{FN}\n```", FN, "fenced"),                                 # one char after the tag is skipped
    (f"```Python\n{FN}\n```", FN, "fenced"),                                  # capitalised tag is mapped first
    (f"```python\n{FN}", FN, "unterminated"),                                # cut before the closing fence
    (f"```python\n{FN}\n```\n```python\ndef g():\n    pass\n```", FN, "fenced"),  # the first block only
    # a python block wins over an earlier bare one
    (f"Example:\n```\nf(1) == 2\n```\nCode:\n```python\n{FN}\n```", FN, "fenced"),
    (f"Here:\n```\n{FN}\n```\nDone.", FN, "bare_fenced"),                    # no python fence: first bare block
    (f"```\n{FN}\n```\n```\ndef g():\n    pass\n```", FN, "bare_fenced"),
    (f"```\n{FN}", FN, "bare_unterminated"),
    (f"```py\n{FN}\n```", f"py\n{FN}", "bare_fenced"),                         # official quirk: "py" stays in the code
    (f"{FN}\n", FN, "whole"),                                                # no fence: the whole answer
    ("", "", "whole"),
])
def test_extract_code(answer, code, how):
    got, kind = extract_code(answer)
    assert kind == how
    assert got.replace("\r", "") == code


def test_prompt_has_the_official_reminder():
    p = eval_prompt({"prompt": "Function: g\n\nInput: dict(a=1), Output: 2\n", "func_name": "g"})
    assert p.startswith("Function: g")
    assert p.endswith("As the function you implement will be called by: g(**input_dict).")


def test_pass_at_k_hand_computed():
    assert unbiased_pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert unbiased_pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)       # 1 - C(3,2)/C(5,2)
    assert unbiased_pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)    # 1 - C(7,5)/C(10,5)
    assert unbiased_pass_at_k(4, 0, 3) == 0.0
    assert unbiased_pass_at_k(5, 4, 2) == 1.0                              # fewer than k wrong ones
    with pytest.raises(ValueError):
        unbiased_pass_at_k(3, 1, 4)
    assert first_k_pass([False, True, False], 1) is False
    assert first_k_pass([False, True, False], 2) is True
    s = summarize([[True, False], [False, False], [False, True]], [1, 2])
    assert s["pass@1"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert s["first_1_pass"] == pytest.approx(1 / 3) and s["first_2_pass"] == pytest.approx(2 / 3)
    assert s["pass@2"] == pytest.approx(2 / 3)


def test_bad_data_rows_are_counted(tmp_path):
    from evals.case2code.data import load_rows
    good = {"id": "a", "prompt": "p", "code": "def f(x): return x", "func_name": "f",
            "example_str": "examples = [dict(x=1)]", "example_outputs": str([{"return": '"1"'}])}
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join([json.dumps(good), "not json", json.dumps({"id": "b", "prompt": "p"}),
                            json.dumps({**good, "example_outputs": "[]"}), json.dumps(good)]) + "\n")
    rows, problems = load_rows(p)
    assert [r["id"] for r in rows] == ["a"] and rows[0]["example_outputs"] == [{"return": '"1"'}]
    assert problems["not JSON"] == 1 and problems["duplicate id"] == 1
    assert sum(problems.values()) == 4


def test_hidden_input_counts_and_the_easier_split_note(tmp_path):
    from evals.case2code.report import write_markdown
    from evals.case2code.scoring import input_counts
    rows = [{"example_outputs": [{"return": "1"}] * 8, "choosed_example_idx": [0, 3, 5]},     # 3 shown, 5 hidden
            {"example_outputs": [{"return": "1"}] * 30, "choosed_example_idx": [1, 2, 4, 9]}]  # 4 shown, 26 hidden
    c = input_counts(rows)
    assert c["shown"] == {"mean": 3.5, "min": 3, "max": 4}
    assert c["hidden"] == {"mean": 15.5, "min": 5, "max": 26}
    assert c["rows_hiding_fewer_than_20"] == 1
    from evals.case2code.record import make_record
    summary = {"n_rows": 2, "n_predictions": 2, "samples_per_row": {"min": 1, "max": 1}, "pass_at_1": 0.5,
               "counts_by_status": {"passed": 1},
               "pass_at_1_by_shown_examples": {}, "inputs_per_row": c}

    def record():   # built by the eval's own record builder, so the test follows the record's schema
        return make_record(model_name="m", model_fingerprint="f", data="d", data_hash="h",
                           config={"data": "d", "max_new_tokens": 8, "temperature": 0.0}, summary=summary,
                           skipped_data_rows={}, extra={})

    write_markdown(record(), tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| inputs per row, shown / hidden (mean; hidden min-max) | 3.5 / 15.5 (5-26) |" in text
    assert "hide 15.5 inputs on average" in text and "easier test" in text
    summary["inputs_per_row"] = input_counts([rows[1]])
    write_markdown(record(), tmp_path / "r.md")
    assert "easier test" not in (tmp_path / "r.md").read_text()
