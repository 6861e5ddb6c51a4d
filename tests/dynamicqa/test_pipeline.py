"""Sampling → samples.jsonl + dists.bin → scores, resumable, and the score CLI on bad input."""
import argparse
import json

import numpy as np
import pytest

from evals.dynamicqa import cli
from evals.dynamicqa.data import load_fact_type
from evals.dynamicqa.judges import ExactJudge
from evals.dynamicqa.sample import SamplingPlan, sample_items
from evals.dynamicqa.score import score_samples
from patch_training.errors import UserError
from tests.dynamicqa.conftest import VOCAB, DistScriptedModel


def respond(prompt: str, j: int) -> str:
    # With a context the model repeats its last filled word for most samples; alone it says
    # "politician" (Bob) or "writer" (Ann), with one odd sample.
    if "[Context]" in prompt:
        ctx = prompt.split("[Context]: ", 1)[1].split("\n", 1)[0]
        word = ctx.split(" was a ", 1)[1].split()[0].strip(".")
        return word if j < 3 else "dunno"
    return "Politician" if "Bob" in prompt and j != 1 else ("writer" if "Ann" in prompt else "actor")


def _args(tmp_path, data_dir, **kw):
    base = dict(out=str(tmp_path / "run"), data_dir=str(data_dir), types="static", limit=None,
                num_samples=4, temperature=0.5, top_p=1.0, max_new_tokens=20, seed=0, stop=None,
                dist_dtype="float32", chunk_items=1, judge="exact", nli_dir=None, nli_with_question=False,
                embedding_threshold=0.8, rouge_threshold=0.3, official_clustering=False,
                judge_device="cpu", judge_cache_dir=None, chat=False)
    base.update(kw)
    return argparse.Namespace(**base)


def _lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_run_writes_samples_distributions_and_scores(tmp_path, small_data_dir):
    model = DistScriptedModel(respond)
    summary = cli.run_with_model(model, _args(tmp_path, small_data_dir))
    out = tmp_path / "run"
    lines = _lines(out / "samples.jsonl")
    # 2 valid rows x (q_only, context) x (obj, replace); 3 prompts per row were sampled
    assert len(lines) == 8 and len(model.prompts_seen) == 6
    assert (out / "dists.bin").stat().st_size == 6 * 4 * VOCAB * 4
    q_obj = next(l for l in lines if l["id"] == "static/1/obj" and l["condition"] == "q_only")
    q_rep = next(l for l in lines if l["id"] == "static/1/replace" and l["condition"] == "q_only")
    assert q_obj["samples"] == q_rep["samples"]               # the shared q-only prompt
    assert q_obj["samples"][0]["mean_nll"] == pytest.approx((0.5 + 0.25) / 2)
    scores = {r["id"]: r for r in _lines(out / "scores.jsonl")}
    bob_rep = scores["static/1/replace"]
    assert bob_rep["groups_q_only"] == [[0, 2, 3], [1]]       # "Politician" x3 vs "actor"
    assert bob_rep["persuaded"] is True and bob_rep["stubborn"] is False
    assert bob_rep["persuaded_rate"] == pytest.approx(0.75)
    assert np.isfinite(bob_rep["coherent_persuasion"])
    # SE by hand: nll per sample = (0.5(1 + j%3) + 0.25)/2 -> 0.375, 0.625, 0.875, 0.375
    l0 = np.log(np.exp(-0.375) + np.exp(-0.875) + np.exp(-0.375))
    assert bob_rep["semantic_entropy"] == pytest.approx(5 - (l0 - 0.625) / 2)
    assert summary["by_type"]["static"]["items"] == 4
    assert summary["load"]["static"]["problems"] == {"no [ENTITY] in context": 1}
    assert (out / "distributions.png").stat().st_size > 1000


def test_run_records_provenance_and_refuses_a_resume_under_other_settings(tmp_path, small_data_dir):
    summary = cli.run_with_model(DistScriptedModel(respond), _args(tmp_path, small_data_dir, limit=1))
    prov = summary["provenance"]
    assert prov["model_fingerprint"] == DistScriptedModel(respond).fingerprint
    assert len(prov["data_hash"]) == 16 and prov["git_commit"]
    # the official protocol by default: no stop string, p_s over every step (EOS included)
    assert prov["settings"]["stop"] == [] and prov["settings"]["p_s_steps"] == "all"
    assert prov["settings"]["num_samples"] == 4 and prov["settings"]["temperature"] == 0.5
    from patch_training.contract.records import EvalRecord
    record = EvalRecord.read(tmp_path / "run" / "record.json")
    assert (record.eval, record.model_fingerprint, record.data_hash) == ("dynamicqa", prov["model_fingerprint"],
                                                                         prov["data_hash"])
    assert record.config["num_samples"] == 4 and record.config["judge"] == "exact"
    assert record.table("load") == [{"fact_type": "static", "items": 1, "rows": 1, "rows_in_file": 3}]
    assert record.table("by_type")[0]["fact_type"] == "static" and record.items_path == "scores.jsonl"
    # a slice says what it is a slice of: 1 row read of the file's 3
    assert {k: summary["load"]["static"][k] for k in ("rows", "rows_in_file")} == {"rows": 1, "rows_in_file": 3}
    # the same run resumes; more rows are other data, another p_s rule other settings: both refused
    cli.run_with_model(DistScriptedModel(respond), _args(tmp_path, small_data_dir, limit=1))
    with pytest.raises(UserError, match="data_hash differ"):
        cli.run_with_model(DistScriptedModel(respond), _args(tmp_path, small_data_dir, limit=2))
    with pytest.raises(UserError, match="settings differ"):
        cli.run_with_model(DistScriptedModel(respond), _args(tmp_path, small_data_dir, limit=1, p_s_steps="kept",
                                                             stop=["\n"]))


def test_resume_skips_done_items_and_drops_orphan_rows(tmp_path, small_data_dir):
    items = load_fact_type("static", small_data_dir / "Static_final.csv").items
    plan = SamplingPlan(num_samples=2)
    out = tmp_path / "s"
    model = DistScriptedModel(respond)
    sample_items(model, items[:1], out, plan, log=lambda m: None)
    # Simulate a kill mid-write: rows of a half-written item and a torn last line.
    with open(out / "dists.bin", "ab") as f:
        f.write(np.zeros(3 * VOCAB, np.float32).tobytes())
    with open(out / "samples.jsonl", "a") as f:
        f.write('{"id": "static/1/obj", "condi')
    model2 = DistScriptedModel(respond)
    sample_items(model2, items, out, plan, log=lambda m: None)
    assert len(model2.prompts_seen) == 3                      # only the second item
    lines = _lines(out / "samples.jsonl")
    assert len(lines) == 8
    rows = sorted({s["dist_ref"]["row"] for l in lines for s in l["samples"]})
    assert rows == list(range(12))
    assert (out / "dists.bin").stat().st_size == 12 * VOCAB * 4
    fresh = tmp_path / "fresh"
    sample_items(DistScriptedModel(respond), items, fresh, plan, log=lambda m: None)
    assert (fresh / "dists.bin").read_bytes() == (out / "dists.bin").read_bytes()


def _write_samples(path, dists_q, dists_c):
    def rec(cond, dists):
        return {"id": "static/0/obj", "condition": cond, "gold": "paris", "question": "Where?",
                "samples": [{"text": "paris", "mean_nll": 0.1, "dist": d} for d in dists]}
    path.write_text(json.dumps(rec("q_only", dists_q)) + "\n" + json.dumps(rec("context", dists_c)) + "\n"
                    + "not json\n")


def test_score_counts_bad_distributions_and_keeps_the_item(tmp_path, capsys):
    p = tmp_path / "samples.jsonl"
    _write_samples(p, [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.2, 0.3, 0.5]])
    assert cli.main(["score", "--samples", str(p), "--out", str(tmp_path / "o"), "--judge", "exact"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["problems"] == {"line is not JSON": 1, "CP skipped: distribution length differs": 1}
    row = _lines(tmp_path / "o" / "scores.jsonl")[0]
    assert row["coherent_persuasion"] is None and row["persuaded"] is True
    _write_samples(p, [[0.5, 0.6]], [[0.5, 0.5]])
    summary = score_samples(p, tmp_path / "o2", ExactJudge(), log=lambda m: None)
    assert summary["problems"]["CP skipped: distribution does not sum to 1"] == 1


def test_score_inline_distributions_hand_checked(tmp_path):
    p = tmp_path / "samples.jsonl"
    _write_samples(p, [[0.25, 0.75]], [[0.5, 0.5]])
    score_samples(p, tmp_path / "o", ExactJudge(), log=lambda m: None)
    row = _lines(tmp_path / "o" / "scores.jsonl")[0]
    assert row["coherent_persuasion"] == pytest.approx(0.143841, abs=1e-6)
    assert row["semantic_entropy"] == pytest.approx(5 + 0.1)
    # An empty answer is saved without a distribution: it leaves CP (its own group drops out).
    recs = [json.loads(l) for l in p.read_text().splitlines() if l.startswith("{")]
    recs[0]["samples"].append({"text": "", "mean_nll": None})
    recs[1]["samples"].append({"text": "paris", "mean_nll": None})
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    summary = score_samples(p, tmp_path / "o3", ExactJudge(), log=lambda m: None)
    row = _lines(tmp_path / "o3" / "scores.jsonl")[0]
    assert row["coherent_persuasion"] == pytest.approx(0.143841, abs=1e-6)
    assert row["groups_q_only"] == [[0], [1]] and row["semantic_entropy"] == pytest.approx(5 + 0.1)
    assert summary["problems"] == {"CP: group without distributions left out": 1}


def test_missing_samples_file_is_one_line(tmp_path, capsys):
    from patch_training.errors import run_cli
    with pytest.raises(SystemExit):
        run_cli(cli.main, ["score", "--samples", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path),
                           "--judge", "exact"])
    assert "samples file not found" in capsys.readouterr().err
