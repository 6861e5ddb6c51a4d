"""End to end: generate -> sandboxed judging -> report, the harness backends, bad input, resume, the CLI."""
from __future__ import annotations

import collections
import json

import pytest

from evals.model_api import Sampling, ScriptedModel, fingerprint_of
from evals.solverlearner import pipeline
from evals.solverlearner.harness_backends import harness_model
from evals.solverlearner.scoring import aggregate, judge_predictions, read_predictions
from patch_training.errors import UserError

CELLS = [("arithmetic", "base9"), ("arithmetic", "base10"), ("syntax", "ovs"), ("spatial", "r90"),
         ("cipher", "shift13"), ("cipher", "shift0")]
SETTINGS = ["deductive_zeroshot", "inductive_fewshot", "solverlearner"]
DIRECT, CODE = Sampling(max_new_tokens=16), Sampling(max_new_tokens=256)


def _run(kind, bank, tmp_path, pool, limit=3):
    items = pipeline.select_items(bank, CELLS, SETTINGS, limit)
    model = harness_model(kind, bank.tasks, items)
    preds = pipeline.generate(model, bank, items, tmp_path, direct_sampling=DIRECT, code_sampling=CODE)
    return pipeline.score(preds, bank, tmp_path, pool=pool)


def test_oracle_scores_one_everywhere(bank, sl_pool, tmp_path):
    summary = _run("oracle", bank, tmp_path, sl_pool)
    assert len(summary["accuracy"]) == len(CELLS) * len(SETTINGS)
    assert set(summary["accuracy"].values()) == {1.0}
    assert set(summary["parse_failures"].values()) == {0} and set(summary["n"].values()) == {3}
    assert summary["exec_status"]["arithmetic/base9/solverlearner"] == {"ok": 3}
    assert summary["problems_available"]["arithmetic/base9"] == len(bank.problems("arithmetic", "base9")) > 3
    for name in ("record.json", "results.md", "chart.png", "judged.jsonl", "predictions.jsonl"):
        assert (tmp_path / name).is_file()
    assert "| arithmetic | base9 |" in (tmp_path / "results.md").read_text()
    from patch_training.contract.records import EvalRecord
    record = EvalRecord.read(tmp_path / "record.json")
    cells = {(c["task"], c["variant"], c["setting"]): c for c in record.table("cells")}
    assert len(cells) == len(CELLS) * len(SETTINGS) and record.summary["correct"] == 3 * len(cells)
    assert cells[("arithmetic", "base9", "solverlearner")]["correct"] == 3 and record.items_path == "judged.jsonl"
    assert {"task": "arithmetic", "variant": "base9", "setting": "solverlearner", "status": "ok",
            "count": 3} in record.table("exec_status")


def test_rule_blind_scores_what_the_data_implies(bank, sl_pool, tmp_path):
    acc = _run("rule_blind", bank, tmp_path, sl_pool)["accuracy"]
    for s in SETTINGS:
        assert acc[f"arithmetic/base10/{s}"] == 1.0 and acc[f"cipher/shift0/{s}"] == 1.0
        assert acc[f"arithmetic/base9/{s}"] == 0.0 and acc[f"cipher/shift13/{s}"] == 0.0
        assert acc[f"syntax/ovs/{s}"] == 0.0 and acc[f"spatial/r90/{s}"] == 0.0


GOOD = ("def solver(a, b):\n    n, s = int(a, 9) + int(b, 9), ''\n    while n:\n        s, n = str(n % 9) + s, n // 9\n"
        "    return s or '0'\n```")
EVIL = {
    "loops": "def solver(a, b):\n    while True:\n        pass\n```",
    "crashes": "def solver(a, b):\n    raise RuntimeError('no')\n```",
    "prints_forged": "def solver(a, b):\n    print('101')\n    print('\\\\boxed{101}')\n    return '7'\n```",
    "eq_always_true": ("class Any(str):\n    def __eq__(self, o):\n        return True\n\n"
                       "def solver(a, b):\n    return Any('7')\n```"),
    "object_return": ("class X:\n    def __eq__(self, o):\n        return True\n\n"
                      "def solver(a, b):\n    return X()\n```"),
    "exits": "import os\n\ndef solver(a, b):\n    os._exit(0)\n```",
    "no_code": "I think the answer is 101.",
    "syntax_error": "def solver(a, b):\n    return (\n```",
}


def test_bad_functions_never_pass(bank, sl_pool, tmp_path):
    rows = [{"id": "arithmetic/base9/0", "setting": "solverlearner", "completion": GOOD},
            # a chat model's fresh answer: its own fence, not a continuation of the prompt's lead
            {"id": "arithmetic/base9/0", "setting": "solverlearner", "completion": "```python\n" + GOOD}]
    rows += [{"id": "arithmetic/base9/0", "setting": "solverlearner", "completion": c, "tag": k}
             for k, c in EVIL.items()]
    judged, bad = judge_predictions(rows, bank, pool=sl_pool)
    assert not bad and len(judged) == len(rows)
    assert judged[0]["correct"] and judged[0]["exec_status"] == "ok"
    assert judged[1]["correct"] and judged[1]["exec_status"] == "ok"
    by_tag = {r["tag"]: j for r, j in zip(rows[2:], judged[2:])}
    assert not any(j["correct"] for j in by_tag.values())
    assert by_tag["loops"]["exec_status"] == "timeout"
    assert by_tag["crashes"]["exec_status"] == "error"
    assert by_tag["prints_forged"]["answer"] == "7"
    assert by_tag["object_return"]["exec_status"] == "bad_return"
    assert by_tag["no_code"]["parse_failure"] and "exec_status" not in by_tag["no_code"]
    summary = aggregate(judged)
    assert summary["n"]["arithmetic/base9/solverlearner"] == len(rows)
    assert summary["parse_failures"]["arithmetic/base9/solverlearner"] == 1
    assert summary["accuracy"]["arithmetic/base9/solverlearner"] == pytest.approx(2 / len(rows))


def test_bad_lines_are_counted_not_fatal(bank, tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"id": "arithmetic/base9/0", "setting": "inductive_fewshot", "completion": " 101."}),
             json.dumps({"id": "arithmetic/base7/0", "setting": "inductive_fewshot", "completion": "1"}),
             json.dumps({"id": "poetry/x/0", "setting": "inductive_fewshot", "completion": "1"}),
             json.dumps({"id": "arithmetic/base9/99999", "setting": "inductive_fewshot", "completion": "1"}),
             json.dumps({"id": "arithmetic/base9/1", "setting": "telepathy", "completion": "1"}),
             json.dumps({"id": "arithmetic-base9-1", "setting": "inductive_fewshot", "completion": "1"}),
             json.dumps({"id": "arithmetic/base9/1", "setting": "inductive_fewshot"}),
             "{not json",
             json.dumps({"id": "arithmetic/base9/1", "setting": "deductive_zeroshot", "completion": " no idea"})]
    path.write_text("\n".join(lines) + "\n")
    summary = pipeline.score(path, bank, tmp_path / "out")  # no solverlearner line: no pool is started
    assert summary["bad_lines"] == {"unknown_id": 3, "unknown_setting": 1, "bad_id": 1, "malformed": 1,
                                    "not_json": 1}
    assert summary["accuracy"] == {"arithmetic/base9/deductive_zeroshot": 0.0,
                                   "arithmetic/base9/inductive_fewshot": 1.0}
    assert summary["parse_failures"]["arithmetic/base9/deductive_zeroshot"] == 1


def test_generate_resumes_and_refuses_another_config(bank, tmp_path):
    items = pipeline.select_items(bank, [("syntax", "svo")], ["inductive_fewshot"], 4)
    asked = []
    model = ScriptedModel(lambda p, j: asked.append(p) or " subject = a, verb = b, object = c", name="count")
    pipeline.generate(model, bank, items, tmp_path, direct_sampling=DIRECT, code_sampling=CODE)
    assert len(asked) == 4
    path = tmp_path / "predictions.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # killed mid-write
    pipeline.generate(model, bank, items, tmp_path, direct_sampling=DIRECT, code_sampling=CODE)
    assert len(asked) == 6
    bad = collections.Counter()
    assert len(read_predictions(path, bad)) == 4 and not bad
    with pytest.raises(UserError, match="other settings"):
        pipeline.generate(model, bank, items, tmp_path, direct_sampling=Sampling(max_new_tokens=5),
                          code_sampling=CODE)


def test_cli_run_and_score(tmp_path, capsys, data_dir):
    from evals.solverlearner.cli import main

    out = tmp_path / "run"
    main(["run", "--harness", "oracle", "--tasks", "arithmetic:base16", "cipher:shift13",
          "--settings", "inductive_fewshot", "solverlearner", "--limit", "2", "--out", str(out),
          "--cipher_words", "10", "--workers", "1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["accuracy"] == {"arithmetic/base16/inductive_fewshot": 1.0, "arithmetic/base16/solverlearner": 1.0,
                                "cipher/shift13/inductive_fewshot": 1.0, "cipher/shift13/solverlearner": 1.0}
    assert set(last["n"].values()) == {2} and set(last["parse_failures"].values()) == {0}
    # the cipher options come from the run's run.json
    main(["score", "--predictions", str(out / "predictions.jsonl"), "--out", str(tmp_path / "rescored"),
          "--workers", "1"])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["accuracy"] == last["accuracy"]
    # the same model, problems and settings whether judged by `run` or re-scored later
    from patch_training.contract.records import EvalRecord
    rec, rec2 = EvalRecord.read(out / "record.json"), EvalRecord.read(tmp_path / "rescored" / "record.json")
    assert rec.model_fingerprint == fingerprint_of("scripted", "solverlearner-oracle") == rec2.model_fingerprint
    assert len(rec.data_hash) == 16 and rec2.data_hash == rec.data_hash and rec.model_name == "oracle"
    assert rec.config["code_sampling"]["max_new_tokens"] > 0
    assert {k: v for k, v in rec2.config.items() if k != "predictions"} == \
        {k: v for k, v in rec.config.items() if k != "predictions"}
    assert f"data hash `{rec.data_hash}`" in (out / "results.md").read_text()


@pytest.mark.parametrize("argv,match", [
    (["--tasks", "poetry"], "unknown task 'poetry'"),
    (["--tasks", "arithmetic:base7"], "unknown variant 'base7'"),
    (["--tasks", "spatial:r45"], "unknown variant 'r45'"),
    (["--settings", "telepathy"], "unknown setting 'telepathy'"),
    ([], "needs a model"),
])
def test_cli_user_errors(argv, match, tmp_path, data_dir):
    from evals.solverlearner.cli import main

    with pytest.raises(UserError, match=match):
        main(["run", "--out", str(tmp_path)] + (argv if argv == [] else ["--harness", "oracle"] + argv))


def test_cli_model_plumbing_through_backends(tmp_path, capsys, monkeypatch, data_dir):
    """The `run` path hands its parsed args to `evals.backends.open_model_from_args` (stubbed here)."""
    import evals.backends
    from evals.solverlearner.cli import main

    seen = {}

    def open_model_from_args(args, default_cache_dir=None):
        seen.update(checkpoint=args.checkpoint, cache=default_cache_dir)
        return ScriptedModel(lambda p, j: " subject = mary, verb = loves, object = noah", name="stand-in")

    monkeypatch.setattr(evals.backends, "open_model_from_args", open_model_from_args)
    main(["run", "--checkpoint", "CKPT", "--tasks", "syntax:ovs", "--settings", "inductive_fewshot",
          "--limit", "3", "--out", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert seen == {"checkpoint": "CKPT", "cache": str(tmp_path / "gen_cache")}
    # problem 0 is "noah loves mary." (OVS): the stand-in's fixed answer is right there and wrong elsewhere
    assert last["n"] == {"syntax/ovs/inductive_fewshot": 3}
    assert 0 < last["accuracy"]["syntax/ovs/inductive_fewshot"] < 1


def test_prompts_then_score_elsewhere(bank, tmp_path, capsys):
    """The external workflow: write prompts, complete them anywhere, score the completions."""
    from evals.solverlearner.cli import main
    from evals.solverlearner.harness_backends import harness_completion

    path = tmp_path / "prompts.jsonl"
    main(["prompts", "--tasks", "spatial:vflip", "--settings", "deductive_fewshot", "--limit", "3",
          "--n_shots", "4", "--out", str(path)])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["spatial/vflip/0", "spatial/vflip/1", "spatial/vflip/2"]
    assert all(r["prompt"].endswith(r["answer_lead"]) for r in rows)
    preds = tmp_path / "preds.jsonl"
    with preds.open("w") as f:
        for r in rows:
            problem = bank.lookup("spatial", "vflip", int(r["id"].rsplit("/", 1)[1]))
            comp = harness_completion("oracle", bank.tasks["spatial"], problem, r["setting"])
            f.write(json.dumps({"id": r["id"], "setting": r["setting"], "completion": comp}) + "\n")
    capsys.readouterr()
    main(["score", "--predictions", str(preds), "--out", str(tmp_path / "s")])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["accuracy"] == {"spatial/vflip/deductive_fewshot": 1.0}
    assert last["object_accuracy"] == {"spatial/vflip/deductive_fewshot": 1.0}


def test_missing_data_is_one_clear_line(tmp_path):
    from evals.solverlearner.cli import main

    with pytest.raises(UserError, match=r"syntax: data file .*test.csv is missing"):
        main(["run", "--harness", "oracle", "--data_dir", str(tmp_path), "--tasks", "syntax:svo",
              "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="does not exist"):
        main(["run", "--harness", "oracle", "--data_dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
