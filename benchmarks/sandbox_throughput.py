"""Trivial programs through our T1 pool vs a human-eval-style executor (Process + Manager per program).

    python -m benchmarks.sandbox_throughput [--n 600]     # last stdout line: one JSON object
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time

from evals.execution import Program, SandboxPool

SRC = "def f(a):\n    return a + 1\n"


def _baseline_one(src: str, a: int, result) -> None:
    ns: dict = {}
    exec(src, ns)
    result.append(repr(ns["f"](a)))


def baseline(n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with multiprocessing.Manager() as m:
            res = m.list()
            p = multiprocessing.Process(target=_baseline_one, args=(SRC, i, res))
            p.start()
            p.join(3)
            if p.is_alive():
                p.kill()
            assert list(res) == [repr(i + 1)]
    return n / (time.perf_counter() - t0)


def ours(n: int) -> tuple[str, float]:
    with SandboxPool() as pool:
        list(pool.run(Program(f"w{i}", SRC, "f", [{"kwargs": {"a": i}}]) for i in range(50)))  # warm-up
        t0 = time.perf_counter()
        ok = sum(r.calls[0]["output"] == json.dumps(repr(i + 1)) for i, r in
                 enumerate(sorted(pool.run(Program(f"{i:06d}", SRC, "f", [{"kwargs": {"a": i}}]) for i in range(n)),
                                  key=lambda r: r.task_id)))
        rate = n / (time.perf_counter() - t0)
        assert ok == n, ok
        return pool.tier, rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-baseline", type=int, default=100)
    args = ap.parse_args(argv)
    tier, ours_rate = ours(args.n)
    base_rate = baseline(args.n_baseline)
    print(json.dumps({"tier": tier, "ours_programs_per_s": round(ours_rate, 1),
                      "baseline_programs_per_s": round(base_rate, 1), "ratio": round(ours_rate / base_rate, 2),
                      "n": args.n, "n_baseline": args.n_baseline}))


if __name__ == "__main__":
    main()
