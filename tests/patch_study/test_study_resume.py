"""Resume logic of the study CLI with the training replaced by fake run dirs (no JAX training)."""
import json

import pytest

from benchmarks.patch_study import __main__ as cli
from benchmarks.patch_study import plan as plan_lib
from benchmarks.patch_study import runner
from tests.support.fake_study_runs import write_run
from patch_training.errors import UserError

FACTS = {"params": 1000, "non_embedding_params": 600, "vocab_size": 64, "hidden_size": 8, "num_layers": 1,
         "intermediate_size": 16}


@pytest.fixture
def fake_training(monkeypatch):
    """run_one writes a finished run, or a half-finished one for the names in `stop_at`."""
    calls, stop_at = [], set()

    def run_one(run, run_dir, token_budget, extra=(), corpus_tokens=None):
        calls.append(run.name)
        finished = run.name not in stop_at
        write_run(run_dir, patch_size=run.row.patch_size, patch_fraction=float(run.row.patch_fraction),
                  final={"code": 2.0 + 0.01 * run.seed, "wikitext": 3.0}, finished=finished)
        (run_dir / "two_stage.json").write_text(json.dumps({"token_budget": token_budget}))
        return {"status": "finished" if finished else "preempted", "elapsed_s": 0.1}

    monkeypatch.setattr(runner, "run_one", run_one)
    monkeypatch.setattr(runner, "measure_step_seconds", lambda: 0.01)
    monkeypatch.setattr(cli, "model_facts", lambda gin_files=None: dict(FACTS))
    return calls, stop_at


def test_run_state(tmp_path):
    assert runner.run_state(tmp_path / "none") == "absent"
    write_run(tmp_path / "half", patch_size=4, patch_fraction=2 / 3, final={"code": 2.0}, finished=False)
    assert runner.run_state(tmp_path / "half") == "partial"
    write_run(tmp_path / "done", patch_size=4, patch_fraction=2 / 3, final={"code": 2.0})
    assert runner.run_state(tmp_path / "done") == "finished"


def test_interrupted_study_resumes_where_it_stopped(tmp_path, fake_training, capsys):
    calls, stop_at = fake_training
    out, results = tmp_path / "study", tmp_path / "results"
    args = ["--out", str(out), "--results", str(results), "--budget_minutes", "3"]
    stop_at.add("token_only_x1_2_s0")
    first = cli.main(args)
    assert first["stopped"] == "token_only_x1_2_s0"
    assert calls == ["token_only_s0", "k4_lambda2_3_s0", "token_only_x1_2_s0"]
    study = json.loads((out / runner.STUDY_FILE).read_text())
    assert study["token_steps"] % plan_lib.STEP_QUANTUM == 0
    # The partial report exists already and names what is missing.
    assert "token_only_x1_2_s0" in (results / "results.md").read_text()

    stop_at.clear()
    calls.clear()
    summary = cli.main(args[:-2] + ["--budget_minutes", "50"])   # a new allowance does not change the plan
    assert calls[0] == "token_only_x1_2_s0" and "token_only_s0" not in calls
    assert len(calls) == 28
    assert json.loads((out / runner.STUDY_FILE).read_text()) == study
    assert summary["missing_runs"] == []
    err = capsys.readouterr().err
    assert "ETA" in err and "tokens/s" in err and "expected time" in err

    calls.clear()
    cli.main(["--out", str(out), "--results", str(results)])
    assert calls == []                                              # everything finished: nothing retrained
    cli.main(["--out", str(out), "--results", str(results), "--report_only"])
    assert calls == []


def test_report_only_without_study_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no study"):
        cli.main(["--out", str(tmp_path / "nothing"), "--report_only"])


def test_plan_mismatch_refused(tmp_path):
    (tmp_path / "two_stage.json").write_text(json.dumps({"token_budget": 5}))
    with pytest.raises(UserError, match="another --out"):
        runner.check_plan_matches(tmp_path, 6)


def test_a_run_dir_from_before_equal_tokens_per_step_is_refused(tmp_path):
    """K=4 λ=2/3 planned with B2 rows per patch step (the recipe before issue 25) would otherwise resume,
    or count as finished, under its own plan."""
    from patch_training.two_stage_training import TwoStageConfig, plan_record
    budget = plan_lib.token_budget(plan_lib.STEP_QUANTUM)
    cfg = TwoStageConfig(token_budget=budget, sequence_length=plan_lib.SEQUENCE_LENGTH,
                         batch_size=plan_lib.BATCH_SIZE, patch_size=4)
    (tmp_path / "two_stage.json").write_text(json.dumps(plan_record(cfg, cfg.plan(), seed=0)))
    runner.check_plan_matches(tmp_path, budget)   # today's default plan passes
    old = TwoStageConfig(token_budget=budget, sequence_length=plan_lib.SEQUENCE_LENGTH,
                         batch_size=plan_lib.BATCH_SIZE, patch_size=4, patch_batch_size=plan_lib.BATCH_SIZE)
    record = plan_record(old, old.plan(), seed=0)
    del record["patch_batch_size"]               # as such a record was written
    (tmp_path / "two_stage.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="stage1_patch_k4 takes 16,384 tokens per step, this study 4,096"):
        runner.check_plan_matches(tmp_path, budget)


def test_a_study_planned_under_an_older_recipe_is_refused(tmp_path, fake_training):
    """A study.json without this recipe (cosine to 0.1, no shorter token-only rows, one size) would mix
    two recipes in one table."""
    out = tmp_path / "study"
    runner.load_or_write_study_record(out, {"token_budget": 7680, "token_steps": 120, "seeds": 3})
    with pytest.raises(UserError, match="another recipe .*before issue 25.*another --out"):
        cli.main(["--out", str(out), "--results", str(tmp_path / "r")])
