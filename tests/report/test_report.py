"""The main job's report: tables from a run directory's files, missing inputs said, figures that load.

The run directory is written by hand here (no training): two tiny runs' `cost.json`, metrics and
evals with known numbers, so the assertions check what the report shows against what we wrote.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evals.report import demo_report
from evals.report.document import Figure, Missing, Paragraph, Report, Section, Table, to_html, to_markdown, write_report


def _stage(name, index, k, steps, fps):
    return {"name": name, "index": index, "patch_size": k, "num_steps": steps, "flops_per_step": fps,
            "flops": fps * steps, "status": "completed", "wall_s": 10.0, "eval_s": 1.0, "train_wall_s": 9.0}


def _write_run(root: Path, stages: list[dict], relative_cost: float, final: dict[str, float]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    total = sum(s["flops"] for s in stages)
    cost = {"patch_size": stages[0]["patch_size"], "patch_fraction": 2 / 3 if len(stages) == 2 else 0.0,
            "relative_cost": relative_cost, "relative_flops_analytic": relative_cost, "total_flops": total,
            "total_tokens": 1000, "total_wall_s": 10.0 * len(stages), "stages": stages}
    (root / "cost.json").write_text(json.dumps(cost))
    for s in stages:
        d = root / s["name"]
        d.mkdir()
        rows = [{"step": i, "loss": 6.0 - i * 0.1, "step_time_s": 0.5} for i in range(1, s["num_steps"] + 1)]
        rows.append({"step": s["num_steps"], **{f"eval/{n}/loss": v + 0.5 for n, v in final.items()}})
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "eval.json").write_text(json.dumps({"eval": {n: {"loss": v + (0.5 if s is not stages[-1] else 0),
                                                              "perplexity": 2.718281828 ** v}
                                                          for n, v in final.items()}}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    _write_run(root, [_stage("stage1_patch_k4", 1, 4, 4, 100.0), _stage("stage2_token", 2, 1, 8, 100.0)],
               0.5, {"code": 4.25, "wikitext": 5.5})
    _write_run(root / "baseline", [_stage("stage2_token", 2, 1, 24, 100.0)], 1.0, {"code": 4.0, "wikitext": 5.0})
    (root / "demo_stages.jsonl").write_text(
        '{"stage": "10_pretrain", "status": "done", "wall_s": 100, "finished_at": "x"}\n'
        '{"stage": "10_pretrain", "status": "done", "wall_s": 7, "finished_at": "y"}\n')
    return root


def test_pretraining_table_shows_the_runs_numbers(run_dir):
    md = to_markdown(demo_report.build(run_dir), run_dir)
    patch_line = next(l for l in md.splitlines() if l.startswith("| patch-level"))
    base_line = next(l for l in md.splitlines() if l.startswith("| token-only"))
    assert "| 0.5 |" in patch_line and "4 + 8" in patch_line and "4.250 / 70.1" in patch_line
    assert "| 1 |" in base_line and "| 24 |" in base_line and "4.000 / 54.6" in base_line
    # the latest run of a stage replaces the earlier line
    assert "| 10_pretrain | done | 7 |" in md and "| 100 |" not in md
    assert (run_dir / "report_figures" / "pretraining_loss_vs_flops.png").stat().st_size > 1000
    assert "code: patch run 4.250 vs token-only 4.000 at equal tokens (+0.250 nats)" in md


def test_equal_compute_reading_interpolates_the_baseline_curve():
    from evals.report.pretraining import _interpolate
    curve = [(100.0, 5.0), (300.0, 4.0), (200.0, 4.6)]
    assert _interpolate(curve, 250.0) == pytest.approx(4.3)
    assert _interpolate(curve, 300.0) == 4.0
    assert _interpolate(curve, 50.0) is None and _interpolate(curve, 400.0) is None


def test_missing_inputs_are_named_and_a_broken_section_is_contained(run_dir, monkeypatch):
    def broken():
        raise KeyError("stages")
    orig = demo_report.default_sections
    monkeypatch.setattr(demo_report, "default_sections",
                        lambda r, f: orig(r, f) + [("Broken", broken)])
    report = demo_report.build(run_dir)
    md = to_markdown(report, run_dir)
    assert "demo_samples.jsonl (the sampling stage has not run)" in md
    assert "## Broken" in md and "this section failed to build: KeyError" in md


def test_markdown_and_html_render_every_block(tmp_path):
    png = tmp_path / "f.png"
    _png(png)
    report = Report("T", "intro", [Section("S", [Paragraph("a <b> & c"), Table(["x", "y|z"], [[1.5, None]]),
                                                 Figure(png, "cap"), Missing("gone")])])
    md = to_markdown(report, tmp_path)
    assert "| x | y\\|z |" in md and "| 1.5 | — |" in md and "![cap](f.png)" in md and "Not available:** gone" in md
    html = to_html(report)
    assert "a &lt;b&gt; &amp; c" in html and "data:image/png;base64," in html and "f.png" not in html


def _png(path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(1, 1))
    plt.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_html_loads_every_figure_in_a_headless_browser(run_dir, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("no headless browser (chromium) in CI: scripts/setup.sh --browser installs it")
        pytest.skip("chromium not installed (scripts/setup.sh --browser installs it)")
    _, html_path = write_report(demo_report.build(run_dir), run_dir)
    # A broken figure on purpose in a second page proves the check can fail.
    bad = tmp_path / "bad.html"
    bad.write_text(html_path.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))

    def figures(page: Path) -> str:
        out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                              "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        import re
        m = re.search(r'data-figures="(\d+)/(\d+)"', out.stdout)
        assert m, f"browser gave no figure count: {out.stderr[-500:]}"
        return m.group(0)

    assert figures(html_path) == 'data-figures="1/1"'
    assert figures(bad) == 'data-figures="0/1"'


def _write_real_model_run(root: Path, base10: int, base9: int) -> None:
    """The real model's files as the stages write them: 3 of 10 official Case2Code rows passed, arithmetic with
    `base10` / `base9` correct of 5 per direct setting, DynamicQA SE higher for temporal facts than static."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pretrained.json").write_text(json.dumps({"name": "SmolLM2-135M-Instruct", "source": "/m/x.gguf",
                                                      "sha256": "ab" * 32, "model_config": {"num_layers": 30}}))
    c2c = root / "case2code_eval" / "smollm2" / "official"
    c2c.mkdir(parents=True)
    (c2c / "results.json").write_text(json.dumps({
        "config": {"max_new_tokens": 2048, "chat": True}, "data_rows_in_file": 500,
        "summary": {"n_rows": 10, "pass_at_1": 0.3, "counts_by_status": {"passed": 3, "truncated": 7}}}))
    settings = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot", "solverlearner")
    acc, n = {}, {}
    for variant, right in (("base10", base10), ("base9", base9)):
        for st in settings:
            acc[f"arithmetic/{variant}/{st}"] = (0 if st == "solverlearner" else right) / 5
            n[f"arithmetic/{variant}/{st}"] = 5
    sl = root / "solverlearner" / "smollm2"
    sl.mkdir(parents=True)
    (sl / "results.json").write_text(json.dumps({"accuracy": acc, "n": n, "parse_failures": {},
                                                 "problems_available": {"arithmetic/base10": 1000}}))
    dq = root / "dynamicqa" / "smollm2"
    dq.mkdir(parents=True)
    se = {"static": [1.0, 1.1, 0.9, 1.0], "temporal": [3.0, 3.1, 2.9, 3.0]}
    (dq / "scores.jsonl").write_text("".join(
        json.dumps({"fact_type": t, "semantic_entropy": v, "coherent_persuasion": float("nan")}) + "\n"
        for t, vs in se.items() for v in vs))
    (dq / "summary.json").write_text(json.dumps({
        "by_type": {t: {"items": 4} for t in se}, "load": {t: {"rows": 2, "rows_in_file": 900} for t in se}}))


@pytest.mark.parametrize("base10,base9,verdict", [(5, 1, "Base-10 arithmetic is above the counterfactual base, "
                                                            "as the paper expects, and the intervals show it."),
                                                  (1, 2, "Base-10 arithmetic is not above the counterfactual base")])
def test_real_model_section_states_what_its_numbers_show(tmp_path, base10, base9, verdict):
    from evals.report.intervals import wilson
    _write_real_model_run(tmp_path, base10, base9)
    md = to_markdown(demo_report.build(tmp_path), tmp_path)
    section = md.split("## A real pretrained model")[1].split("\n## ")[0]
    lo, hi = wilson(3, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.108, 0.603)      # the textbook Wilson interval of 3/10
    assert "first 10 of 500 rows, greedy, ≤2048 new tokens, chat template" in section
    assert "0.300 (3/10) [0.108, 0.603]" in section and "3 of 10 rows" in section
    assert f"{base10 * 3}/15" in section and "first 5 of 1000 problems per variant" in section
    assert verdict in section
    assert "DynamicQA SE, which the paper finds higher" in section and "temporal 3.00 (as the paper, intervals apart)" in section
    assert "first 2 of 900 rows (4 items)" in section
