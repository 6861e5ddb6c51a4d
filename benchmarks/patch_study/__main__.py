"""CLI: `python -m benchmarks.patch_study [--out DIR] [--budget_minutes N] [--only RUN ...] [--report_only]`.

See the package docstring (`benchmarks/patch_study/__init__.py`) for the study, its sizing and the
measured numbers. Prints one JSON object (the report's summary, curves left out) as its last line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.patch_study import plan as plan_lib
from benchmarks.patch_study import report as report_lib
from benchmarks.patch_study import runner
from benchmarks.patch_study.runner import say

DEFAULT_OUT = "benchmarks/results/patch_study/runs"  # in git without checkpoints (its .gitignore): resumes on any machine
DEFAULT_RESULTS = "benchmarks/results/patch_study"
# Seconds per run that are not training steps (data open, two compilations, validation passes),
# used for the up-front estimate until the study's own finished runs give a measured figure.
DEFAULT_OVERHEAD_S = 60.0


def parse_args(argv):
    import benchmarks.patch_study as pkg
    p = argparse.ArgumentParser(prog="python -m benchmarks.patch_study", description=pkg.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="study dir: one two-stage run dir per run (resumable)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="where results.md, loss_vs_compute.png and "
                   "summary.json go")
    p.add_argument("--budget_minutes", type=float, default=None,
                   help="shrink each run's token budget so the whole study fits this many minutes at the "
                   "measured step time (default: the designed budget of base.gin, ~2 h on 2 cores); fixed "
                   "in <out>/study.json at the first call")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN",
                   help="train only these runs (run names like k4_lambda2_3_s1, or row names like k8_lambda2_3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds of every row (default 3)")
    p.add_argument("--report_only", action="store_true", help="rebuild the report from the run dirs; no training")
    p.add_argument("--gin", action="append", default=[], metavar="BINDING",
                   help="extra gin binding for every run (e.g. \"EVAL_BATCHES = 4\"); becomes part of study.json")
    return p.parse_args(argv)


def model_facts(gin_files: list[str] | None = None) -> dict:
    """Parameters of a study model (the main size by default), with and without the embedding tables."""
    import gin
    import jax
    from patch_training.main.two_stage import parse_experiment_gin
    from patch_training.model import ModelConfig, count_params, init_params
    gin.clear_config()
    parse_experiment_gin(gin_files or [plan_lib.BASE_GIN], ["MODEL_DIR = '/nonexistent'"])
    cfg = ModelConfig()
    gin.clear_config()
    n = count_params(jax.eval_shape(lambda: init_params(cfg, jax.random.key(0))))
    tables = (1 if cfg.tie_embeddings else 2) * cfg.vocab_size * cfg.hidden_size
    return {"params": int(n), "non_embedding_params": int(n - tables), "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "intermediate_size": cfg.intermediate_size}


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out).absolute()
    runs = plan_lib.plan_runs(args.seeds)
    selected = plan_lib.plan_runs(args.seeds, args.only) if args.only else runs
    study_path = out / runner.STUDY_FILE

    if args.report_only:
        if not study_path.is_file():
            from patch_training.errors import UserError
            raise UserError(f"{study_path} not found: no study in {out} (run without --report_only first)")
        meta = json.loads(study_path.read_text())
        return finish(out, plan_lib.plan_runs(meta.get("seeds", args.seeds)), Path(args.results), meta)

    # Measure first: the step time sizes --budget_minutes and the ETA.
    rates = runner.observed_rates(out, runs)
    if rates is None:
        say("measuring the study model's train step (32 x 128 tokens) ...")
        rates = {"seconds_per_step": runner.measure_step_seconds(), "overhead_s_per_run": DEFAULT_OVERHEAD_S,
                 "source": "measured now (random tokens, compiled step)"}
    else:
        rates["source"] = "median of this study's finished runs"
    cost = plan_lib.total_relative_cost(runs)
    if study_path.is_file():
        meta = json.loads(study_path.read_text())
        if args.budget_minutes is not None:
            say(f"note: {study_path} fixes the budget at {meta['token_budget']:,} tokens per run; "
                "--budget_minutes is ignored on resume (use another --out for another budget)")
    else:
        steps = (plan_lib.DESIGN_TOKEN_STEPS if args.budget_minutes is None else
                 plan_lib.token_steps_for_minutes(args.budget_minutes, rates["seconds_per_step"], cost,
                                                  rates["overhead_s_per_run"], len(runs)))
        budget = plan_lib.token_budget(steps)
        facts = model_facts()
        sizes = {}
        for size in plan_lib.SIZES.values():
            f = facts if size is plan_lib.MAIN else model_facts([plan_lib.BASE_GIN, size.model_gin])
            size_steps = size.token_steps(steps)
            sizes[size.name] = {**f, "token_steps": size_steps,
                                "tokens_per_param": plan_lib.token_budget(size_steps) / f["params"]}
        meta = {"recipe": plan_lib.RECIPE, "sizes": sizes, "token_budget": budget, "token_steps": steps, "batch_size": plan_lib.BATCH_SIZE,
                "sequence_length": plan_lib.SEQUENCE_LENGTH, "seeds": args.seeds, "extra_gin": args.gin,
                "model": facts, "tokens_per_param": budget / facts["params"],
                "tokens_per_non_embedding_param": budget / facts["non_embedding_params"],
                "study_relative_cost": cost, "budget_minutes": args.budget_minutes}
        meta = runner.load_or_write_study_record(out, meta)
    if meta.get("recipe") != plan_lib.RECIPE:
        from patch_training.errors import UserError
        raise UserError(f"{study_path} was planned under another recipe ({meta.get('recipe', 'before issue 25')});"
                        " use another --out")
    steps, budget = meta["token_steps"], meta["token_budget"]

    for r in runs:  # finished runs too: the report must not mix budgets or recipes
        runner.check_plan_matches(out / r.name, r.row.token_budget(steps))
    todo = [r for r in selected if runner.run_state(out / r.name) != "finished"]
    expected = runner.expected_seconds(todo, steps, rates["seconds_per_step"], rates["overhead_s_per_run"])
    say(f"study in {out}: {len(runs)} runs, {cost:.2f} token-run equivalents, {budget:,} tokens per run "
        f"({steps} token steps of {plan_lib.BATCH_SIZE} x {plan_lib.SEQUENCE_LENGTH}; "
        f"{meta['tokens_per_param']:.1f} tokens per parameter, {meta['model']['params']:,} parameters)")
    say(f"throughput: {rates['seconds_per_step']:.3f} s per token step = "
        f"{plan_lib.BATCH_SIZE * plan_lib.SEQUENCE_LENGTH / rates['seconds_per_step']:,.0f} tokens/s "
        f"({rates['source']}); ~{rates['overhead_s_per_run']:.0f} s overhead per run")
    for r in selected:
        state = runner.run_state(out / r.name)
        say(f"  {r.name:<22} {r.row.size.name:<5} K={r.row.patch_size} λ={str(r.row.patch_fraction):<4} "
            f"budget {str(r.row.budget_fraction):<3} cost {r.row.relative_cost:.3f}  {state}")
    say(f"expected time for the {len(todo)} unfinished run(s): {runner.format_duration(expected)}")

    t0 = time.perf_counter()
    done_cost = 0.0
    todo_cost = plan_lib.total_relative_cost(todo)
    for i, run in enumerate(todo, 1):
        run_dir = out / run.name
        run_budget = run.row.token_budget(steps)
        runner.check_plan_matches(run_dir, run_budget)
        elapsed = time.perf_counter() - t0
        if done_cost > 0:
            per_cost = elapsed / done_cost  # measured in this session: includes overheads
            eta = per_cost * (todo_cost - done_cost)
        else:
            eta = runner.expected_seconds(todo[i - 1:], steps, rates["seconds_per_step"], rates["overhead_s_per_run"])
        say(f"run {i}/{len(todo)} {run.name} ({run_budget:,} tokens, cost {run.row.main_cost:.3f}); "
            f"{done_cost:.2f}/{todo_cost:.2f} token-run equivalents done, elapsed "
            f"{runner.format_duration(elapsed)}, ETA {runner.format_duration(eta)}")
        result = runner.run_one(run, run_dir, run_budget, meta.get("extra_gin", []), corpus_tokens=budget)
        if result["status"] != "finished":
            say(f"{run.name} stopped ({result['status']}); rerun the same command to resume it")
            finish(out, runs, Path(args.results), meta)
            return {"benchmark": "patch_study", "stopped": run.name, "status": result["status"]}
        done_cost += run.row.main_cost
    say(f"trained {len(todo)} run(s) in {runner.format_duration(time.perf_counter() - t0)}")
    return finish(out, runs, Path(args.results), meta)


def finish(out: Path, runs, results: Path, meta: dict) -> dict:
    summary = report_lib.build_report(out, runs, results, meta)
    for line in summary["statement"]:
        say(line)
    say(f"report: {results / 'results.md'}")
    brief = {k: v for k, v in summary.items() if k not in ("curves", "runs")}
    print(json.dumps(brief, default=float), flush=True)
    return summary


if __name__ == "__main__":
    from patch_training.errors import run_cli
    run_cli(main, prog="python -m benchmarks.patch_study")
