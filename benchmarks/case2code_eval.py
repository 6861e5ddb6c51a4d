"""Score the official Case2Code answers (each row's gold completion) with our judge, and with the official
harness's scheme on the same rows in the same run.

    python -m benchmarks.case2code_eval [--data F] [--limit N] [--workers N]   # last stdout line: one JSON object

ours:           `evals.case2code` (pre-forked sandbox pool, parent-side comparison, gold ceiling not included)
official_scheme: one fresh interpreter per program (`python` on the answer's code + example_str + a driver that
                prints result markers; the verdict parsed back from stdout, 10 s timeout), `--workers` at a time,
                as the official harness does. It runs the dataset's reference code, so each interpreter is put in
                bubblewrap (read-only root, no network, private /tmp); without bwrap it is skipped.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

DRIVER = '''
import json as _json
print("@@START@@")
for _ex in examples:
    try:
        _r = {func}(**_ex)
        print("<|OUT|> <|RETURN|> " + _json.dumps(repr(_r)))
    except Exception as _e:
        print("<|OUT|> <|EXCEPTION|> " + _json.dumps(str(type(_e)) + ": " + str(_e)))
print("@@END@@")
'''


def _official_one(row: dict, code: str, tmp: str) -> bool:
    src = code + "\n\n" + row["example_str"] + "\n" + DRIVER.format(func=row["func_name"])
    # A fresh /tmp hides whatever lives there, our interpreter's venv included when the checkout does (a CI
    # clone under /tmp): bind the interpreter's prefixes back in, read-only, over the empty /tmp.
    keep = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
           *[arg for p in keep for arg in ("--ro-bind", p, p)], "--unshare-all",
           "--die-with-parent", "--new-session", sys.executable, "-c", src]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=tmp).stdout
    except subprocess.TimeoutExpired:
        return False
    m = re.search(r"@@START@@\n(.*?)@@END@@", out, re.DOTALL)
    if not m:
        return False
    got = []
    for o in (x.strip() for x in m.group(1).split("<|OUT|>") if x.strip()):
        got.append(o if "<|EXCEPTION|>" in o else o.split("<|RETURN|>")[-1].strip())
    gold = [g["return"] if "return" in g else g["error"] for g in row["example_outputs"]]
    return got == gold


def official_scheme(rows: list[dict], workers: int) -> dict:
    from evals.case2code.protocol import extract_code
    tmp = tempfile.mkdtemp(prefix="c2c_bench_")
    t0 = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(workers) as ex:
            passed = sum(ex.map(lambda r: _official_one(r, extract_code(r["output"])[0], tmp), rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "rows_per_s": round(len(rows) / wall, 1), "passed": passed}


def ours(rows: list[dict], workers: int | None) -> dict:
    from evals.case2code.judge import JUDGE_LIMITS, judge
    from evals.execution import SandboxPool
    with SandboxPool(workers, limits=JUDGE_LIMITS) as pool:
        t0 = time.perf_counter()
        verdicts = list(judge(pool, {r["id"]: r for r in rows},
                              ({"id": r["id"], "completion": r["output"]} for r in rows)))
        wall = time.perf_counter() - t0
        return {"wall_s": round(wall, 2), "rows_per_s": round(len(rows) / wall, 1),
                "passed": sum(v["passed"] for v in verdicts), "tier": pool.tier, "workers": len(pool.workers)}


def main(argv: list[str] | None = None) -> None:
    from evals.case2code.data import load_rows
    from patch_training.shared_data import shared_data_path
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared_data_path("case2code", "test.jsonl")))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="default: one per core (both schemes)")
    args = ap.parse_args(argv)
    workers = args.workers or len(os.sched_getaffinity(0))
    rows, _ = load_rows(args.data, args.limit)
    result = {"rows": len(rows), "workers": workers, "ours": ours(rows, workers)}
    if shutil.which("bwrap"):
        result["official_scheme"] = official_scheme(rows, workers)
        result["speedup"] = round(result["official_scheme"]["wall_s"] / max(result["ours"]["wall_s"], 1e-9), 2)
    else:
        result["official_scheme"] = "skipped: bwrap not found (the reference code is never run unconfined)"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
