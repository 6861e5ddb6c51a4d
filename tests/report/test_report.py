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


def _c2c_summary(n: int, passed: int) -> dict:
    """What `evals.case2code.scoring.score` returns, for `passed` of `n` rows (the rest truncated)."""
    return {"n_rows": n, "n_predictions": n, "rows_without_predictions": 0, "samples_per_row": {"min": 1, "max": 1},
            "pass_at_1": passed / n, "counts_by_status": {"passed": passed, "truncated": n - passed},
            "extraction": {"python_block": n}, "pass_at_k_unbiased": {"1": passed / n},
            "first_k_pass_official": {"1": passed / n},
            "inputs_per_row": {"shown": {"mean": 3.0, "min": 3, "max": 3}, "hidden": {"mean": 22.0, "min": 20, "max": 24}},
            "pass_at_1_by_shown_examples": {"3": {"rows": n, "pass_at_1": passed / n, "gold": 1.0}},
            "gold_ceiling": 1.0, "pass_at_1_on_gold_solvable": passed / n,
            "gold": {"rows": n, "passed": n, "rate": 1.0, "misses_by_class": {}, "reasons": {}, "misses": []}}


def _sl_summary(right: dict[str, int], n: int = 5, solved: int = 0) -> dict:
    """What `evals.solverlearner.scoring.aggregate` returns: arithmetic, `right[variant]` of `n` correct in each
    direct setting, `solved` of `n` by the written solvers."""
    settings = ("deductive_zeroshot", "deductive_fewshot", "inductive_fewshot", "solverlearner")
    keys = [f"arithmetic/{v}/{st}" for v in right for st in settings]
    return {"accuracy": {k: (solved if k.endswith("solverlearner") else right[k.split("/")[1]]) / n for k in keys},
            "parse_failures": {k: 0 for k in keys}, "n": {k: n for k in keys}, "object_accuracy": {},
            "exec_status": {}, "bad_lines": {}, "problems_available": {f"arithmetic/{v}": 1000 for v in right}}


def _dqa_summary(se: dict[str, float]) -> dict:
    """What `evals.dynamicqa.score.score_samples` returns, with the given mean SE per fact type."""
    return {"judge": "rouge", "official_clustering": False, "ids": 4 * len(se), "problems": {},
            "by_type": {t: {"items": 4, "semantic_entropy": v, "coherent_persuasion": None, "cp_items": 0,
                            "cp_approximate": False, "persuaded": 0.5, "stubborn": 0.25, "mean_q_only_groups": 2.0}
                        for t, v in se.items()}}


def _write_eval_run(root: Path, base10: int, base9: int) -> None:
    """A run dir as the stages leave it, from small fake EvalRecords built by the evals' own record makers and a
    manifest: an own model `tiny_patch` and a pretrained `realm` (names no code spells). The real model passes 3
    of 10 official Case2Code rows, has arithmetic with `base10` / `base9` correct of 5 per direct setting, and a
    DynamicQA SE higher for temporal facts than static."""
    from evals.case2code.record import make_record as c2c_record
    from evals.dynamicqa.record import make_record as dqa_record
    from evals.solverlearner.record import make_record as sl_record
    from patch_training.contract.layout import RunLayout

    lay = RunLayout(root)
    for name, kind in (("tiny_patch", "trained"), ("realm", "pretrained")):
        (root / name).mkdir(parents=True)
        (root / name / "params.bin").write_bytes(name.encode())
        lay.add_model(name, root / name, "10_pretrain" if kind == "trained" else "12_pretrained", kind=kind,
                      source=None if kind == "trained" else "/m/x.gguf",
                      info={} if kind == "trained" else {"display_name": "Real-M", "sha256": "ab" * 32,
                                                         "model_config": {"num_layers": 30}})
    ident = dict(model_fingerprint="f" * 16, data_hash="d" * 16)
    for model, passed, chat, max_new in (("realm", 3, True, 2048), ("tiny_patch", 1, False, 48)):
        c2c_record(model_name=model, data="/d/test.jsonl", config={"max_new_tokens": max_new, "chat": chat},
                   summary=_c2c_summary(10, passed), skipped_data_rows={},
                   extra={"data_rows_in_file": 500, "wall_s": 12.5}, **ident
                   ).write(lay.record_path("case2code", model, "official"))
    for model, right, solved in (("realm", {"base10": base10, "base9": base9}, 0),
                                 ("tiny_patch", {"base10": 0, "base9": 0}, 0), ("oracle", {"base10": 5, "base9": 5}, 5)):
        sl_record(_sl_summary(right, solved=solved), model_name=model, data_path="/d", config={}, **ident
                  ).write(lay.record_path("solverlearner", model))
    se = {"static": [1.0, 1.1, 0.9, 1.0], "temporal": [3.0, 3.1, 2.9, 3.0]}
    for model in ("realm", "tiny_patch"):
        load = {t: {"items": 4, "rows": 2, "rows_in_file": 900, "problems": {}} for t in se}
        dqa_record(_dqa_summary({t: sum(v) / 4 for t, v in se.items()}), model_name=model, data_path="/d",
                   config={}, load=load, **ident).write(lay.record_path("dynamicqa", model))
    (lay.eval_dir("dynamicqa", "realm") / "scores.jsonl").write_text("".join(
        json.dumps({"fact_type": t, "semantic_entropy": v, "coherent_persuasion": float("nan")}) + "\n"
        for t, vs in se.items() for v in vs))


@pytest.mark.parametrize("base10,base9,verdict", [(5, 1, "Base-10 arithmetic is above the counterfactual base, "
                                                            "as the paper expects, and the intervals show it."),
                                                  (1, 2, "Base-10 arithmetic is not above the counterfactual base")])
def test_real_model_section_states_what_its_numbers_show(tmp_path, base10, base9, verdict):
    from evals.report.intervals import wilson
    _write_eval_run(tmp_path, base10, base9)
    md = to_markdown(demo_report.build(tmp_path), tmp_path)
    section = md.split("## A real pretrained model")[1].split("\n## ")[0]
    assert section.startswith(" beside the demo's: Real-M")          # the manifest's pretrained model, by its info
    lo, hi = wilson(3, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.108, 0.603)      # the textbook Wilson interval of 3/10
    assert "first 10 of 500 rows, greedy, ≤2048 new tokens, chat template" in section
    assert "0.300 (3/10) [0.108, 0.603]" in section and "3 of 10 rows" in section
    assert "tiny_patch 1/10" in section                         # the manifest's own model beside it
    assert f"{base10 * 3}/15" in section and "first 5 of 1000 problems per variant" in section
    assert verdict in section
    assert "The oracle row reads 1.0 in every cell" in section
    assert "DynamicQA SE, which the paper finds higher" in section and "temporal 3.00 (as the paper, intervals apart)" in section
    assert "first 2 of 900 rows (4 items)" in section


def test_eval_sections_read_the_records_of_the_manifests_models(tmp_path):
    _write_eval_run(tmp_path, 5, 1)
    # A Markdown view beside the records must not be what the report shows.
    (tmp_path / "evals" / "solverlearner" / "table.md").write_text("| model | task |\n|---|---|\n| bogus | row |\n")
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "w.bin").write_bytes(b"x")
    from patch_training.contract.layout import RunLayout
    RunLayout(tmp_path).add_model("later", tmp_path / "later", "35_finetune")   # in the manifest, never evaluated
    md = to_markdown(demo_report.build(tmp_path), tmp_path)
    c2c = md.split("## Case2Code eval")[1].split("\n## ")[0]
    lines = [l for l in c2c.splitlines() if l.startswith("| tiny_patch") or l.startswith("| realm")]
    assert [l.split(" | ")[0] for l in lines] == ["| tiny_patch", "| realm"]     # manifest order
    assert "| tiny_patch | official | 10 of 500 | 0.1 |" in lines[0] and "passed 1, truncated 9" in lines[0]
    assert "evals/case2code/later (stage 40_case2code_eval has not run for later" in c2c
    sl = md.split("## SolverLearner")[1].split("\n## ")[0]
    assert "| realm | arithmetic | base10 | 1.000 n=5 | 1.000 n=5 | 1.000 n=5 | 0.000 n=5 |" in sl
    assert "| oracle | arithmetic | base9 |" in sl and "bogus" not in md
    assert "Slices: the first n problems of each variant, n = tiny_patch 5, realm 5, oracle 5" in sl
    dqa = md.split("## DynamicQA")[1].split("\n## ")[0]
    assert "| tiny_patch | temporal | 2 of 900 | 4 | 3 |" in dqa
    models = md.split("## Models this run produced")[1].split("\n## ")[0]
    assert "| realm | pretrained | 12_pretrained | realm | /m/x.gguf |" in models
