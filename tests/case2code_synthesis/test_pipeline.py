"""The planted tree goes through the whole synthesis and every function lands where it belongs."""
from __future__ import annotations

import json
import re

from tests.case2code_synthesis.tree import EXPECTED_DROPS, EXPECTED_KEPT

from case2code_finetune.jsonl_io import read_jsonl

OFFICIAL_FIELDS = {"id", "code", "func_name", "example_str", "example_inputs", "example_outputs",
                   "choosed_example_idx", "prompt", "output", "exec_status", "parsed_inputs", "exec_code"}


def test_funnel_places_every_planted_function(synthesis):
    out, funnel = synthesis
    assert funnel["drops"] == EXPECTED_DROPS
    kept = {r["func_name"] for r in read_jsonl(out / "functions.jsonl")}
    # of the two behavioural twins exactly one survives
    assert kept - {"double_a", "double_b"} == EXPECTED_KEPT
    assert len(kept & {"double_a", "double_b"}) == 1
    stages = dict(funnel["stages"])
    assert stages["deduped"] == len(EXPECTED_KEPT) + 1
    assert funnel["files"]["non_utf8_files"] == 1 and funnel["files"]["unparseable_files"] == 1
    assert funnel["files"]["skipped_dirs"] == 2  # tests/ and __pycache__/
    assert sum(stages[f"rows_{s}"] for s in ("validation", "test")) + stages["rows_train"] // 2 == stages["deduped"]
    on_disk = json.loads((out / "funnel.json").read_text())
    assert on_disk["stages"] == funnel["stages"]


def test_bundled_context_and_raw_shape(synthesis):
    out, _ = synthesis
    fns = {r["func_name"]: r for r in read_jsonl(out / "functions.jsonl")}
    assert fns["hypotenuse"]["import_code"] == ["import math"]
    assert fns["shifted"]["constants"] == ["OFFSET = 7"]
    assert fns["normalise_words"]["helpers"][0].startswith("def _clean(word)")
    assert fns["normalise_words"]["code"].index("def _clean") < fns["normalise_words"]["code"].index(
        "def normalise_words")
    for r in fns.values():
        assert 5 <= len(r["example_outputs"]) <= 10
        assert len(r["example_inputs"]) == len(r["example_outputs"]) == len(r["parsed_inputs"])
        assert not any("at 0x" in json.dumps(o) for o in r["example_outputs"])


def test_eval_rows_have_the_official_fields_and_format(synthesis):
    out, _ = synthesis
    rows = list(read_jsonl(out / "test.jsonl")) + list(read_jsonl(out / "validation.jsonl"))
    assert rows
    for r in rows:
        assert set(r) == OFFICIAL_FIELDS
        n = len(r["example_outputs"])
        shown = r["choosed_example_idx"]
        assert 3 <= len(shown) < n and len(set(shown)) == len(shown)
        assert r["output"] == f"The function is:\n\n```python\n{r['code']}\n```"
        lines = [ln for ln in r["prompt"].split("\n") if ln]
        assert sorted(ln for ln in lines if not ln.startswith("Input: ")) == sorted(
            [f"Function: {r['func_name']}", "Write a function that generates the output from the input."])
        examples = [ln for ln in lines if ln.startswith("Input: ")]
        assert len(examples) == len(shown)
        for ln, i in zip(examples, shown):
            want = r["example_outputs"][i]
            text = want["return"] if "return" in want else want["error"].split("<|EXCEPTION|> ", 1)[1]
            assert ln.endswith(f", Output: {text}")
            assert re.match(r"^Input: dict\(.*\), Output: ", ln)


def test_eval_rows_score_unchanged_in_the_sandbox(synthesis):
    """Run each held-out row exactly as the Case2Code eval does: every recorded output is reproduced."""
    from evals.execution import Limits, SandboxPool, case2code_program, outputs_match

    out, _ = synthesis
    rows = list(read_jsonl(out / "test.jsonl"))
    assert rows, "no held-out rows to run"
    progs = [case2code_program(r["id"], r["code"], r["func_name"], r["example_str"], len(r["example_outputs"]))
             for r in rows]
    with SandboxPool(1, limits=Limits(wall_s=1.0)) as pool:
        results = {res.task_id: res for res in pool.run(progs)}
    for r in rows:
        calls = results[r["id"]].calls
        # strict: a run that came back with fewer calls than recorded outputs must not pass on what it has
        assert all(outputs_match(c, want) for c, want in zip(calls, r["example_outputs"], strict=True)), r["id"]


def test_splits_do_not_leak_and_train_prompts_vary(synthesis):
    out, _ = synthesis
    per_split = {s: {r["id"].rsplit("_", 1)[0] for r in read_jsonl(out / f"{s}.jsonl")}
                 for s in ("train", "validation", "test")}
    assert not per_split["train"] & per_split["test"]
    assert not per_split["train"] & per_split["validation"]
    assert not per_split["validation"] & per_split["test"]
    train = list(read_jsonl(out / "train.jsonl"))
    assert all(set(r) >= {"id", "prompt", "output"} for r in train)
    assert len({r["prompt"].split("\n")[0] for r in train}) > 1


def test_finished_run_is_skipped(synthesis, planted):
    from tests.case2code_synthesis.conftest import settings

    from case2code_finetune.pipeline import synthesize

    out, funnel = synthesis
    before = (out / "functions.jsonl").stat().st_mtime_ns
    again = synthesize(settings(out, planted))
    assert again == funnel
    assert (out / "functions.jsonl").stat().st_mtime_ns == before
