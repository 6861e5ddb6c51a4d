"""SolverLearner functions through the sandbox pool vs one subprocess per function, on the same work.

The work: the oracle's `solver` for every problem of the full two-digit arithmetic set (bases 8, 9, 10, 11,
16: 5,000 functions, each called once on its query), judged by the parent. Our path is the eval's own
(`scoring.judge_predictions` with one `SandboxPool` for the batch); the comparison starts a fresh
`python -I` per function (no isolation at all, so it flatters the baseline) and judges its printed repr the same
way. Both must get every answer right.

    python -m benchmarks.solverlearner_exec [--limit N]      # last stdout line: one JSON object
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from evals.execution import SandboxPool
from evals.solverlearner.harness_backends import harness_completion
from evals.solverlearner.scoring import judge_predictions, literal_from_canonical
from evals.solverlearner.tasks import ProblemBank, make_tasks
from patch_training.shared_data import shared_data_dir

BASES = (8, 9, 10, 11, 16)
_DRIVER = ("import json, sys\n"
           "req = json.loads(sys.stdin.read())\n"
           "ns = {}\n"
           "exec(req['source'], ns)\n"
           "print(json.dumps(repr(ns['solver'](**req['kwargs']))))\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="problems per base (default: all 1000)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    with SandboxPool(args.workers) as pool:  # started before the gold is loaded
        bank = ProblemBank(make_tasks(), shared_data_dir(), n_shots=0)
        problems = [p for b in BASES for p in bank.problems("arithmetic", f"base{b}")[:args.limit]]
        task = bank.tasks["arithmetic"]
        rows = [{"id": p.id, "setting": "solverlearner",
                 "completion": harness_completion("oracle", task, p, "solverlearner")} for p in problems]
        t0 = time.perf_counter()
        judged, _ = judge_predictions(rows, bank, pool=pool)
        pool_s = time.perf_counter() - t0
        tier = pool.tier
    pool_ok = sum(r["correct"] for r in judged)

    t0 = time.perf_counter()
    sub_ok = 0
    for p, row in zip(problems, rows):
        source = row["completion"].rsplit("```", 1)[0]
        req = json.dumps({"source": source, "kwargs": task.solver_kwargs(p)})
        out = subprocess.run([sys.executable, "-I", "-c", _DRIVER], input=req, capture_output=True, text=True,
                             timeout=10)
        ok, value = literal_from_canonical(out.stdout.strip())
        answer = task.from_solver_output(value, p) if ok else None
        sub_ok += answer is not None and task.judge(answer, p).correct
    sub_s = time.perf_counter() - t0
    n = len(problems)
    print(json.dumps({"functions": n, "tier": tier,
                      "sandbox_pool_functions_per_s": round(n / pool_s, 1),
                      "subprocess_per_function_per_s": round(n / sub_s, 1),
                      "speedup": round(sub_s / pool_s, 2), "pool_correct": pool_ok, "subprocess_correct": sub_ok,
                      "pool_s": round(pool_s, 2), "subprocess_s": round(sub_s, 2)}))


if __name__ == "__main__":
    main()
