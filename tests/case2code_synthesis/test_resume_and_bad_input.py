"""Resume after a kill, and bad input: one clear line or a funnel count, never a partial deliverable."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from tests.case2code_synthesis.conftest import settings

from case2code_finetune.jsonl_io import read_jsonl
from patch_training.errors import UserError

DELIVERABLES = ("functions.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "funnel.json")


def _cut_like_a_kill(out):
    """What SIGKILL can leave: journals cut after some records plus a torn line, no deliverables, later
    passes not started."""
    work = out / "work"
    for name in DELIVERABLES:
        (out / name).unlink()
    for name in ("final.jsonl", "behaviour.jsonl", "pass_b.jsonl"):
        (work / name).unlink(missing_ok=True)
    for name in ("pass_a.jsonl", "inputs.jsonl"):
        lines = (work / name).read_text().splitlines(keepends=True)
        keep = lines[: len(lines) // 2]
        (work / name).write_text("".join(keep) + lines[len(lines) // 2][:25])
    return {json.loads(line)["task_id" if "task_id" in line else "id"] for line in keep}


def test_killed_run_resumes_without_redoing_or_losing_work(synthesis, planted, tmp_path):
    from case2code_finetune.pipeline import synthesize

    done_out, done_funnel = synthesis
    out = tmp_path / "data"
    shutil.copytree(done_out, out)
    finished_before = _cut_like_a_kill(out)
    assert finished_before
    funnel = synthesize(settings(out, planted))
    for name in ("functions.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (out / name).read_bytes() == (done_out / name).read_bytes(), name
    assert funnel["stages"] == done_funnel["stages"] and funnel["drops"] == done_funnel["drops"]
    # every program ran exactly once across the two lives of the run
    ids = [r["task_id"] for r in read_jsonl(out / "work" / "pass_a.jsonl") if "task_id" in r]
    assert len(ids) == len(set(ids)) == dict(done_funnel["stages"])["with_inputs"]
    ids = [r["id"] for r in read_jsonl(out / "work" / "inputs.jsonl")]
    assert len(ids) == len(set(ids))


def test_missing_source_is_one_line_and_writes_nothing(tmp_path, capsys):
    from case2code_finetune.synthesize import main

    with pytest.raises(UserError, match="source directory does not exist"):
        main(["--out", str(tmp_path / "out"), "--source", str(tmp_path / "nope")])
    assert not (tmp_path / "out").exists()


class _RefusingModel:
    fingerprint = "refusing"

    def generate(self, prompts, n, sampling):
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def test_endpoint_failure_is_one_line_and_leaves_no_deliverable(planted, tmp_path):
    from case2code_finetune.pipeline import synthesize

    out = tmp_path / "data"
    with pytest.raises(UserError) as err:
        synthesize(settings(out, planted, inputs="llm", model_id="refusing"), model=_RefusingModel())
    assert "Connection refused" in str(err.value) and "\n" not in str(err.value)
    assert not any((out / name).exists() for name in DELIVERABLES)


def test_llm_answers_are_parsed_not_run_and_bad_ones_counted(synthesis):
    from case2code_finetune.llm_inputs import LLMInputs, build_prompt
    from evals.model_api import ScriptedModel

    out, _ = synthesis
    rows = [r for r in read_jsonl(out / "work" / "harvested.jsonl") if r["func_name"] in ("scale", "shout",
                                                                                         "shifted")]
    answers = {
        "scale": "Sure!\n```python\nexamples = [\n    dict(n=1, factor=2),\n    dict(n=__import__('os')),\n"
                 "    dict(n=3),\n    dict(m=4),\n    dict(n=[1, (2, 3)], factor=-1),\n]\n```",
        "shout": "The inputs could be 'a' and 'b'.",            # not a list of dicts
        "shifted": "```python\nexamples = [5, 6]\n```",           # a list, but not of dict(...) calls
    }

    def respond(prompt, j):
        return next(a for name, a in answers.items() if f"def {name}(" in prompt.split("Function:")[-1])

    counts = Counter()
    got = LLMInputs(ScriptedModel(respond)).generate(rows, counts)
    by_name = {r["func_name"]: got[r["id"]] for r in rows}
    assert by_name["scale"] == [{"n": 1, "factor": 2}, {"n": 3}, {"n": [1, (2, 3)], "factor": -1}]
    assert by_name["shout"] == by_name["shifted"] == []
    assert counts["llm_bad_answer"] == 2 and counts["llm_prompted"] == 3
    assert counts["llm_bad_items"] == 2 + 2  # the __import__ call and the unknown name; two non-dict items
    assert "10" in build_prompt("def f(x):\n    return x\n") and "dict(" in build_prompt("def f(x): pass")



def test_llm_and_typed_inputs_together_through_the_pipeline(tmp_path):
    """--inputs both with a scripted model: the model's inputs run first, its bad answer is counted, and the
    kept row keeps the model's prompt and answer (the official `filtered` shape)."""
    from case2code_finetune.pipeline import synthesize
    from evals.model_api import ScriptedModel

    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text("def scale(n: int, factor: int = 3) -> int:\n    return n * factor + 1\n\n\n"
                              "def shout(text: str) -> str:\n    return text.upper() + '!'\n")
    good = "```python\nexamples = [\n" + "".join(f"    dict(n={i}, factor={i % 4}),\n" for i in range(10)) + "]\n```"

    def respond(prompt, j):
        return good if "def scale(" in prompt.split("Function:")[-1] else "no idea"

    out = tmp_path / "data"
    funnel = synthesize(settings(out, src, inputs="both", model_id="scripted", test_set=None),
                        model=ScriptedModel(respond))
    assert funnel["inputs"]["llm_bad_answer"] == 1 and funnel["inputs"]["llm_prompted"] == 2
    fns = {r["func_name"]: r for r in read_jsonl(out / "functions.jsonl")}
    assert set(fns) == {"scale", "shout"}
    assert fns["scale"]["input_origins"] == ["llm"] * 10
    assert fns["scale"]["inputs"][1] == "dict(n=1, factor=1)" and fns["scale"]["completions"] == good
    assert set(fns["shout"]["input_origins"]) == {"typed"} and "completions" not in fns["shout"]


def test_cli_turns_a_refused_endpoint_into_one_line(monkeypatch, tmp_path):
    import case2code_finetune.llm_inputs as llm
    from case2code_finetune.synthesize import main

    def refuse(**kw):
        raise ConnectionRefusedError(f"[Errno 111] Connection refused: {kw['endpoint']}\n(after 5 retries)")

    monkeypatch.setattr(llm, "open_language_model", refuse)
    with pytest.raises(UserError) as err:
        main(["--out", str(tmp_path / "o"), "--inputs", "llm", "--endpoint", "http://127.0.0.1:9/v1"])
    assert str(err.value).startswith("cannot open the model (http://127.0.0.1:9/v1)") and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()
