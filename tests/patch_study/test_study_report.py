"""The report step on fake run dirs: table numbers, seed spread, verdicts and the generated statement."""
import json
import math
import statistics

import pytest

from benchmarks.patch_study import plan as plan_lib
from benchmarks.patch_study import report as report_lib
from tests.support.fake_study_runs import write_run

TOKEN = [2.00, 2.02, 1.98]        # token-only code losses over 3 seeds (std 0.02)
K4_23 = [2.01, 2.03, 1.99]        # K=4, λ=2/3: within noise of token-only
META = {"token_budget": 7680, "token_steps": 120, "batch_size": 4, "sequence_length": 16,
        "tokens_per_param": 21.0, "model": {"params": 1000, "non_embedding_params": 600, "vocab_size": 64}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    runs = plan_lib.plan_runs(3)
    finals = {"token_only": TOKEN, "k4_lambda2_3": K4_23, "k4_lambda1_2": [1.80], "k4_lambda4_5": [2.00],
              "k2_lambda2_3": [2.01]}
    for run in runs:
        row = run.row
        if row.name == "k8_lambda2_3":
            continue  # left out: the report must name it as missing
        code = finals[row.name][run.seed]
        write_run(out / run.name, patch_size=row.patch_size, patch_fraction=float(row.patch_fraction),
                  final={"code": code, "wikitext": code + 1.0}, evals=3)
    results = out / "results"
    summary = report_lib.build_report(out, runs, results, META)
    return out, results, summary


def test_table_has_seed_means_and_sample_std(study):
    _, _, summary = study
    by_row = {c["row"]: c for c in summary["configurations"]}
    tok = by_row["token_only"]["final"]["code"]
    assert tok["n"] == 3
    assert tok["mean"] == pytest.approx(statistics.fmean(TOKEN))
    assert tok["std"] == pytest.approx(statistics.stdev(TOKEN))
    assert by_row["k4_lambda1_2"]["final"]["code"]["std"] is None
    assert by_row["k4_lambda2_3"]["relative_cost"] == pytest.approx(0.5)
    assert by_row["k4_lambda1_2"]["relative_cost"] == pytest.approx(0.625)
    assert "k8_lambda2_3" not in by_row


def test_verdicts_follow_the_numbers(study):
    _, _, summary = study
    comp = summary["comparisons"]
    c = comp["k4_lambda2_3"]["code"]
    assert c["delta_final"] == pytest.approx(0.01)
    se = math.sqrt(statistics.stdev(K4_23) ** 2 / 3 + statistics.stdev(TOKEN) ** 2 / 3)
    assert c["stderr"] == pytest.approx(se)
    assert c["verdict_final"] == "matches"
    assert comp["k4_lambda1_2"]["code"]["verdict_final"] == "beats"      # 0.2 nats better, one seed
    assert comp["k4_lambda1_2"]["code"]["spread_borrowed_for"] == ["patch"]
    assert comp["k4_lambda4_5"]["code"]["verdict_final"] == "matches"


def test_equal_compute_reads_token_only_curve(study):
    _, _, summary = study
    c = summary["comparisons"]["k4_lambda2_3"]["code"]
    # token-only's seed-mean curve at the patch run's FLOPs lies above its final loss (still falling).
    assert c["token_only_at_equal_compute"] > statistics.fmean(TOKEN)
    assert c["delta_equal_compute"] < c["delta_final"]


def test_statement_and_files(study):
    _, results, summary = study
    text = "\n".join(summary["statement"])
    assert "K=4, λ=1/2 (beats" in text
    assert "k8_lambda2_3_s0" in text                    # the missing run is named
    assert "λ ablation" in text and "paper" in text
    md = (results / "results.md").read_text()
    assert "| K=4, λ=2/3 | 4 | 2/3 | 0.500 |" in md
    assert f"{statistics.fmean(TOKEN):.4f} ± {statistics.stdev(TOKEN):.4f}" in md
    assert (results / "loss_vs_compute.png").stat().st_size > 1000
    saved = json.loads((results / "summary.json").read_text())
    assert saved["statement"] == summary["statement"]


def test_no_token_only_says_so(tmp_path):
    runs = plan_lib.plan_runs(1, ["k4_lambda2_3"])
    write_run(tmp_path / runs[0].name, patch_size=4, patch_fraction=2 / 3, final={"code": 2.0})
    summary = report_lib.build_report(tmp_path, runs, tmp_path / "r", META)
    assert summary["statement"] == ["No finished token-only run: nothing to compare against yet."]


def test_interpolation_in_log_flops():
    pts = [(1e6, 3.0), (1e8, 1.0)]
    assert report_lib.interpolate_log(pts, 1e7) == pytest.approx(2.0)
    assert report_lib.interpolate_log(pts, 1e5) is None
    assert report_lib.interpolate_log(pts, 1e8) == pytest.approx(1.0)
