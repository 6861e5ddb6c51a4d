"""One smoke run per benchmark: the smallest shapes and fewest steps its flags allow, in this process.

A benchmark is never pass/fail on its numbers, but it must run and keep its promise: the last stdout line
is one JSON object carrying the figures the benchmark is for. Each run below calls the module's
`main(argv)` in the test process (a fresh interpreter would spend seconds importing JAX, TensorFlow and
torch again) and checks that line. `test_every_benchmark_has_a_smoke_run` makes a new benchmark module
fail the suite until it gets an entry here.
"""
from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from patch_training.shared_data import shared_data_path
from tests.support import xla_env

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


def last_json_line(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "the benchmark printed nothing on stdout"
    result = json.loads(lines[-1])
    assert isinstance(result, dict), f"last stdout line is not a JSON object: {lines[-1][:200]}"
    return result


def positive(result: dict, *keys: str) -> None:
    """Each dotted key exists and holds a finite number above zero."""
    for key in keys:
        value = result
        for part in key.split("."):
            assert isinstance(value, dict) and part in value, f"{key!r} missing from {sorted(result)}"
            value = value[part]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{key} = {value!r}"
        assert math.isfinite(value) and value > 0, f"{key} = {value!r}"


def needs_shared(*parts: str) -> Path:
    path = shared_data_path(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (../shared/data; PATCHTRAIN_SHARED_DATA overrides)")
    return path


def run_benchmark(module: str, argv: list[str], capsys) -> dict:
    main = importlib.import_module(module).main
    returned = main([str(a) for a in argv])
    assert returned in (None, 0) or isinstance(returned, dict), f"main returned {returned!r}"
    return last_json_line(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------ the runs
# One function per benchmark module (its name without `benchmarks.`): it runs the benchmark and checks it.

def smoke_train_throughput(tmp_path, capsys):
    # --malloc system: the default (tcmalloc) restarts the interpreter under LD_PRELOAD, which would replace
    # the test process; the smoke run needs no allocator comparison.
    r = run_benchmark("benchmarks.train_throughput",
                      ["--model_gin", "configs/models/tiny.gin", "--batch", 1, "--sequence_length", 16,
                       "--repeats", 1, "--warmup", 1, "--threads", 1, "--malloc", "system", "--peak_n", 128], capsys)
    assert r["benchmark"] == "train_throughput" and r["malloc"].startswith("glibc")
    assert r["numerics"]["dtype"] == "bfloat16"  # the default CPU training numerics
    assert set(r["sides"]) == {"ours", "torch_fp32", "torch_bf16_autocast"}
    positive(r, "tokens_per_s", "step_time_s", "mfu", "peak_tflops_per_s",
             "ratio_vs_torch_fp32_median", "ratio_vs_torch_bf16_autocast_median")
    for side in r["sides"].values():
        assert len(side["step_times_s"]) == 1 and math.isfinite(side["loss_last"])
        positive(side, "tokens_per_s_median", "peak_tflops_per_s", "mfu_median")


def smoke_input_pipeline(tmp_path, capsys):
    # The trainer side is train_throughput's `jax_side` at the same shape and numerics as that smoke run, so
    # the two share one compiled step (compile_train_step's cache): its oneDNN fusions cannot be stored in the
    # persistent compilation cache, so every other bf16 compile is paid on every run.
    r = run_benchmark("benchmarks.input_pipeline",
                      ["--model_gin", "configs/models/tiny.gin", "--batch", 1,
                       "--network_length", 16, "--pipeline_steps", 2, "--trainer_steps", 1, "--vocab", "byte",
                       "--max_tokens", 2000], capsys)
    assert r["benchmark"] == "input_pipeline" and r["sequence_length"] == 16 and r["numerics"] == "bfloat16"
    positive(r, "pipeline_tokens_per_s", "trainer_tokens_per_s", "headroom")
    assert r["pipeline_is_bottleneck"] == (r["headroom"] < 1)


def smoke_row_store(tmp_path, capsys):
    # One in-process Beam build (the 2-process DirectRunner costs ~20 s of worker start-up: the benchmark's
    # own run measures it), the tiny model's step at input_pipeline's smoke shape, 2 host processes × 4 devices.
    pytest.importorskip("apache_beam", reason="needs the beam extra")
    r = run_benchmark("benchmarks.row_store",
                      ["--corpus_mb", 0.05, "--files", 2, "--worker_counts", 1, "--running_mode", "in_memory",
                       "--sequence_length", 16, "--batch", 8, "--host_steps", 2, "--pipeline_steps", 2,
                       "--trainer_steps", 1, "--model_gin", "configs/models/tiny.gin", "--out", tmp_path / "w"],
                      capsys)
    assert r["benchmark"] == "row_store" and r["preprocess"][0]["workers"] == 1
    positive(r["preprocess"][0], "tokens_per_s", "tokenize_tokens_per_s")
    positive(r, "input_pipeline.pipeline_tokens_per_s",
             "input_pipeline.trainer_tokens_per_s", "hours_for_360B_tokens_by_dataflow_workers.64")
    hosts = r["two_hosts"]
    assert hosts["halves_partition_each_step"] and hosts["each_reads_half"]
    assert [p["rows_read"] for p in hosts["per_process"]] == [8, 8]
    assert [p["bytes_read"] for p in hosts["per_process"]] == [hosts["global_batch_bytes"]] * 2


def smoke_bf16_loss_parity(tmp_path, capsys):
    # 10 steps: the gap is measured on 10-step running means.
    r = run_benchmark("benchmarks.bf16_loss_parity",
                      ["--steps", 10, "--batch", 1, "--sequence_length", 16], capsys)
    assert r["benchmark"] == "bf16_loss_parity" and r["steps"] == 10
    positive(r, "first_loss", "final_loss_fp32", "final_loss_other")
    assert 0 <= r["max_smoothed_gap"] <= r["max_step_gap"] and math.isfinite(r["max_step_gap"])
    assert r["within_tolerance"] == (r["max_smoothed_gap"] <= r["tolerance_smoothed_gap"])


def smoke_patch_speedup(tmp_path, capsys):
    r = run_benchmark("benchmarks.patch_speedup",
                      ["--model", "tiny", "--k", 2, "--batch", 1, "--network_length", 16, "--steps", 1,
                       "--warmup", 1, "--max_tokens", 2000], capsys)
    assert r["benchmark"] == "patch_speedup" and r["ideal_speedup"] == 2.0
    positive(r, "token_level_tokens_per_s", "patch_level_tokens_per_s", "speedup")


def smoke_gpu_check(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    r = run_benchmark("benchmarks.gpu_check",
                      ["--allow_cpu", "--model", "configs/models/tiny.gin", "--network_length", 16,
                       "--patch_size", 2, "--rows_per_gpu", 1, "--steps", 1, "--warmup", 1, "--attention", "xla",
                       "--out", out], capsys)
    assert r["benchmark"] == "gpu_check" and json.loads(out.read_text()) == r
    assert [x["run"] for x in r["results"]] == ["token/xla", "patch_k2/xla"]
    positive(r, "peak_tflops_per_device")
    for run in r["results"]:
        positive(run, "tokens_per_s", "mfu_causal_halved", "step_s_median")
        assert math.isfinite(run["final_loss"])


def smoke_finetune_throughput(tmp_path, capsys):
    # The four rows with the shortest answers: at 128 byte tokens a row keeps its whole answer (the prompt is
    # cut from the left), and a few rows build in a fraction of the time of the 500.
    lines = needs_shared("case2code", "test.jsonl").read_text().splitlines()
    rows = sorted(lines, key=lambda line: len(json.loads(line)["output"]))[:4]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(rows) + "\n")
    r = run_benchmark("benchmarks.finetune_throughput",
                      ["--data", data, "--model", "tiny", "--vocab", "byte", "--sequence_length", 128, "--batch", 1,
                       "--steps", 2], capsys)
    assert r["benchmark"] == "finetune_throughput" and r["examples"] == 4 and r["timed_steps"] >= 1
    positive(r, "tokens_per_s", "answer_tokens_per_s", "non_pad_tokens_per_s", "packing_efficiency")
    assert r["answer_fraction"] <= r["packing_efficiency"] <= 1


def smoke_patch_reproduction(tmp_path, capsys):
    r = run_benchmark("benchmarks.patch_reproduction",
                      ["--out", tmp_path / "repro", "--model", "tiny", "--vocab", "byte",
                       "--budget_tokens", 3 * 4 * 16 * 2, "--batch", 4, "--sequence_length", 16,  # K=4 divides the batch
                       "--eval_batches", 1, "--evals", 1], capsys)
    assert r["benchmark"] == "patch_reproduction" and r["k"] == 4
    assert [run["run"] for run in r["runs"]] == ["baseline", "patch_k4"]
    assert r["relative_compute"] == pytest.approx(0.5)  # λ/K + (1 − λ) at K = 4, λ = 2/3
    assert r["final"], "no validation set compared"
    for cmp in r["final"].values():
        positive(cmp, "baseline_loss", "patch_loss", "baseline_ppl", "patch_ppl")
    assert Path(r["table"]).is_file() and Path(r["plot"]).is_file()


def smoke_decode_throughput(tmp_path, capsys):
    r = run_benchmark("benchmarks.decode_throughput",
                      ["--model", "tiny", "--batch", 1, "--new_tokens", 2, "--prompt_len", 4, "--repeats", 1,
                       "--threads", 1, "--idle_probe_s", 0], capsys)
    assert r["benchmark"] == "decode_throughput" and r["model"] == "tiny"
    positive(r, "ours_tokens_per_s", "reference_tokens_per_s", "ratio", "ratio_vs_torch_bf16.median")
    # Same fp32 weights, greedy, two tokens: ours and PyTorch pick the same tokens.
    assert r["greedy_agreement"]["ours_fp32_vs_torch_fp32"] == 1.0


def smoke_decode_mixed_lengths(tmp_path, capsys):
    data = needs_shared("case2code", "test.jsonl")
    r = run_benchmark("benchmarks.decode_mixed_lengths",
                      ["--model", "tiny", "--data", data, "--num_prompts", 2, "--batch", 2, "--min_new", 1,
                       "--max_new", 3, "--max_prompt", 32], capsys)
    assert r["benchmark"] == "decode_mixed_lengths" and r["num_prompts"] == 2
    assert set(r["tokens_per_s"]) == {"continuous_bf16", "continuous_fp32", "static_fp32"}
    positive(r, "tokens_per_s.continuous_bf16", "tokens_per_s.static_fp32",
             "speedup_continuous_fp32_vs_static_fp32", "speedup_continuous_bf16_vs_static_fp32")
    # No stop token: each prompt generates exactly its limit, and with two prompts those are the min and max.
    assert r["tokens_generated"] == r["new_token_limits"]["min"] + r["new_token_limits"]["max"]
    assert 0 <= r["token_agreement_continuous_vs_static_fp32"] <= 1


def smoke_serve_load(tmp_path, capsys):
    r = run_benchmark("benchmarks.serve_load",
                      ["--model", "tiny", "--clients", "1,16", "--requests", 4, "--min_prompt", 2, "--max_prompt", 8,
                       "--min_new", 2, "--max_new", 4, "--batch_size", 2], capsys)
    assert r["benchmark"] == "serve_load" and [lv["clients"] for lv in r["levels"]] == [1, 16]
    for level in r["levels"]:
        assert level["ok"] == 4 and level["errors"] == 0
        positive(level, "tokens_per_s", "requests_per_s", "latency_s.p50", "latency_s.p99")
        assert 8 <= level["completion_tokens"] <= 16   # ignore_eos: each completion is as long as asked
    positive(r, "throughput_ratio_16_vs_1")
    assert r["peer"] is None


def smoke_dynamicqa_sampling(tmp_path, capsys):
    needs_shared("dynamicqa")
    # Two items: the first is the compile/warm-up chunk (batch_size // 2 items), the second is timed.
    r = run_benchmark("benchmarks.dynamicqa_sampling",
                      ["--model", "tiny", "--prompts", 6, "--num_samples", 2, "--max_new_tokens", 2,
                       "--batch_size", 2, "--out", tmp_path / "dqa"], capsys)
    assert r["benchmark"] == "dynamicqa_sampling" and r["prompts"] == 6 and r["timed_prompts"] == 3
    positive(r, "prompts_per_s", "sampled_tokens_per_s", "peak_rss_mb", "dist_bytes_per_sample")
    assert r["dist_bytes_per_sample"] == 384 * 4  # one float32 distribution over the tiny vocabulary
    assert (tmp_path / "dqa" / "dists.bin").stat().st_size == r["dist_bytes_per_sample"] * 6 * 2


def smoke_sandbox_throughput(tmp_path, capsys):
    # A subprocess: the baseline forks a worker per program (multiprocessing), and forking this process,
    # which runs JAX's threads, can deadlock the child. The benchmark imports no JAX, so it starts quickly.
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sandbox_throughput", "--n", "10", "--n-baseline", "2"],
                          capture_output=True, text=True, cwd=REPO, env=xla_env.subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = last_json_line(proc.stdout)
    assert r["n"] == 10 and r["tier"]
    positive(r, "ours_programs_per_s", "baseline_programs_per_s", "ratio")


def smoke_solverlearner_exec(tmp_path, capsys):
    needs_shared("counterfactual", "arithmetic")  # the problems are the official two-digit sums
    r = run_benchmark("benchmarks.solverlearner_exec", ["--limit", 1, "--workers", 1], capsys)
    assert r["functions"] == 5  # one problem per base
    assert r["pool_correct"] == r["subprocess_correct"] == 5  # the oracle's solvers are right both ways
    positive(r, "sandbox_pool_functions_per_s", "subprocess_per_function_per_s", "speedup")


def smoke_case2code_eval(tmp_path, capsys):
    data = needs_shared("case2code", "test.jsonl")
    r = run_benchmark("benchmarks.case2code_eval", ["--data", data, "--limit", 3, "--workers", 1], capsys)
    assert r["rows"] == 3 and r["ours"]["passed"] == 3  # gold answers pass our judge
    positive(r, "ours.rows_per_s")
    if isinstance(r["official_scheme"], dict):  # bubblewrap present
        assert r["official_scheme"]["passed"] == 3
        positive(r, "official_scheme.rows_per_s", "speedup")
    else:
        assert r["official_scheme"].startswith("skipped")


def smoke_case2code_synthesis(tmp_path, capsys):
    needs_shared("case2code", "test.jsonl")  # decontamination reads the Case2Code test set
    r = run_benchmark("benchmarks.case2code_synthesis",
                      ["--max_functions", 3, "--workers", 1, "--out", tmp_path / "c2c"], capsys)
    assert r["benchmark"] == "case2code_synthesis" and r["max_functions"] == 3
    assert 0 < dict(r["funnel"])["decontaminated"] <= 3
    positive(r, "functions_per_s", "harvested_defs_per_s")


def smoke_patch_study(tmp_path, capsys):
    # The study trains for hours; its CLI with the training replaced by fake run dirs (resume, ETA,
    # report) is tested in tests/patch_study/test_study_resume.py. Here: finished run dirs already on
    # disk, so the real CLI (nothing patched) trains nothing and goes straight to its report and JSON line.
    from benchmarks.patch_study import plan as plan_lib
    from benchmarks.patch_study import runner
    from tests.support import fake_study_runs

    out = tmp_path / "study"
    runs = plan_lib.plan_runs(1)
    for run in runs:
        fake_study_runs.write_run(out / run.name, patch_size=run.row.patch_size,
                                  patch_fraction=float(run.row.patch_fraction),
                                  final={"code": 2.0 + 0.1 / run.row.relative_cost})
    runner.load_or_write_study_record(out, {
        "recipe": plan_lib.RECIPE, "sizes": {"main": {"params": 1000, "non_embedding_params": 600,
                                                      "token_steps": 120, "tokens_per_param": 7.7}},
        "token_budget": fake_study_runs.BUDGET, "token_steps": 120, "batch_size": 4, "sequence_length": 16,
        "seeds": 1, "extra_gin": [], "model": {"params": 1000, "non_embedding_params": 600},
        "tokens_per_param": fake_study_runs.BUDGET / 1000, "tokens_per_non_embedding_param": 1.0,
        "study_relative_cost": plan_lib.total_relative_cost(runs), "budget_minutes": None})
    r = run_benchmark("benchmarks.patch_study.__main__",
                      ["--out", out, "--results", tmp_path / "results", "--seeds", 1], capsys)
    assert r["benchmark"] == "patch_study" and r["missing_runs"] == [] and r["statement"]
    assert "curves" not in r and len(r["configurations"]) == len(plan_lib.ROWS)
    assert (tmp_path / "results" / "summary.json").is_file()


def _needs_llamacpp() -> Path:
    """The GGUF file llama.cpp's benchmarks read; skips (saying why) without the interop extra or the file."""
    from evals.backends.llamacpp_server import missing_reason
    from patch_training.pretrained import smollm2_gguf_path

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    gguf = smollm2_gguf_path(required=False)
    if gguf is None:
        pytest.skip("the SmolLM2 GGUF file is not cached (scripts/setup.sh --hf)")
    return gguf


@pytest.fixture(scope="module")
def smollm2_checkpoint(tmp_path_factory):
    """Our import of the SmolLM2 GGUF, shared by the llama.cpp benchmarks' smoke runs (~10 s)."""
    from patch_training.hf_convert import main as convert
    out = tmp_path_factory.mktemp("smollm2") / "ckpt"
    assert convert(["import", "--gguf", str(_needs_llamacpp()), "--out", str(out)]) == 0
    return out


def smoke_llamacpp_logits(tmp_path, capsys, request):
    gguf = _needs_llamacpp()
    data = needs_shared("case2code", "test.jsonl")
    ckpt = request.getfixturevalue("smollm2_checkpoint")
    r = run_benchmark("benchmarks.llamacpp_logits",
                      ["--gguf", gguf, "--checkpoint", ckpt, "--data", data, "--prompts", 1, "--steps", 2,
                       "--work_dir", tmp_path], capsys)
    assert r["benchmark"] == "llamacpp_logits" and r["prompts"] == 1 and r["steps"] == 2
    summary = r["summary"]
    assert set(summary) == {"llamacpp_kv_f32", "llamacpp_f32", "ours_fp32", "ours_bf16", "ours_fp32_vs_llamacpp_f32"}
    positive(summary, "ours_fp32.generated.max_abs_dlogit", "ours_fp32.prompt.positions")
    # llama.cpp on the dequantized weights computes what we compute: fp32 rounding apart, the same logits
    assert summary["ours_fp32_vs_llamacpp_f32"]["prompt"]["max_abs_dlogit"] < 1e-2
    assert 0 <= r["gap_left_without_quantized_arithmetic"] < 0.1


def smoke_llamacpp_decode(tmp_path, capsys, request):
    gguf = _needs_llamacpp()
    data = needs_shared("case2code", "test.jsonl")
    ckpt = request.getfixturevalue("smollm2_checkpoint")
    r = run_benchmark("benchmarks.llamacpp_decode",
                      ["--gguf", gguf, "--checkpoint", ckpt, "--data", data, "--rows", 2, "--new_tokens", 2,
                       "--batch", 2, "--repeats", 1, "--idle_probe_s", 0], capsys)
    assert r["benchmark"] == "llamacpp_decode" and r["rows"] == 2 and r["new_tokens"] == 2
    assert set(r["tokens_per_s_best"]) == {"llamacpp", "ours_fp32_b1", "ours_fp32_b2", "ours_bf16_b1", "ours_bf16_b2"}
    positive(r, "llamacpp_tokens_per_s", "ours_tokens_per_s", "ratio")
    # the same rows, greedy: our fp32 engine's tokens do not depend on the batch
    assert r["prefix_agreement_with_llamacpp"]["ours_fp32_b1"] == r["prefix_agreement_with_llamacpp"]["ours_fp32_b2"]


SMOKES: dict[str, Callable] = {name.removeprefix("smoke_"): fn for name, fn in globals().items()
                               if name.startswith("smoke_")}


def benchmark_modules() -> set[str]:
    """Every benchmark: the modules in benchmarks/ and the packages there with a __main__."""
    modules = {p.stem for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py"}
    return modules | {p.parent.name for p in BENCHMARKS.glob("*/__main__.py")}


def test_every_benchmark_has_a_smoke_run():
    found = benchmark_modules()
    assert {"train_throughput", "input_pipeline", "patch_study"} <= found  # the listing itself works
    missing = sorted(found - set(SMOKES))
    assert not missing, f"benchmarks without a smoke run in {Path(__file__).name}: {missing}"
    stale = sorted(set(SMOKES) - found)
    assert not stale, f"smoke runs for benchmarks that no longer exist: {stale}"


# These set torch's process-wide thread count (--threads 1 below, to leave the other core to the other worker).
SETS_TORCH_THREADS = {"train_throughput", "decode_throughput"}


# These ask for module fixtures of their own (an imported real checkpoint), through `request`.
TAKES_FIXTURES = {"llamacpp_logits", "llamacpp_decode"}


# Three trainer runs end to end (baseline; patch stage + token stage), each compiling its own train and eval
# steps and saving a checkpoint: ~12-15 s even at 16 tokens a row, the longest run here (`make test-fast` skips it).
SLOW = {"patch_reproduction"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(SMOKES)])
def test_benchmark_smoke(name, tmp_path, capsys, monkeypatch, request):
    monkeypatch.chdir(REPO)  # benchmarks read configs/ by relative path
    if name in TAKES_FIXTURES:
        SMOKES[name](tmp_path, capsys, request)
        return
    if name not in SETS_TORCH_THREADS:
        SMOKES[name](tmp_path, capsys)
        return
    # Loaded before the benchmark, torch's default thread count is known and can be restored.
    torch = pytest.importorskip("torch")  # the --hf extra (`make test` installs it)
    pytest.importorskip("transformers")
    threads = torch.get_num_threads()
    try:
        SMOKES[name](tmp_path, capsys)
    finally:  # later tests on this worker keep torch's default
        torch.set_num_threads(threads)
