"""Case2Code synthesis throughput on the default source (stdlib + site-packages), typed inputs.

    python -m benchmarks.case2code_synthesis [--max_functions 500] [--out DIR]   # last line: one JSON object

Functions/s counts harvested functions that entered the pipeline (after the harvest filters, dedup and
decontamination) per second of wall time for the whole run: harvest, inputs, two sandbox passes, the final
re-run, behavioural dedup, prompts and splits. A fresh output directory is used unless --out is given.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

from case2code_finetune.pipeline import SynthesisConfig, synthesize


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max_functions", type=int, default=500, help="0 = the whole default source")
    p.add_argument("--out", default=None)
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or f"{tmp}/c2c"
        cfg = SynthesisConfig(out=out, inputs="typed", max_functions=args.max_functions or None,
                              num_workers=args.workers)
        t0 = time.perf_counter()
        funnel = synthesize(cfg)
        wall = time.perf_counter() - t0
    stages = dict(funnel["stages"])
    print(json.dumps({
        "benchmark": "case2code_synthesis", "inputs": "typed", "max_functions": args.max_functions,
        "wall_s": round(wall, 1), "functions_per_s": round(stages["decontaminated"] / wall, 2),
        "harvested_defs_per_s": round(stages["harvested"] / wall, 1),
        "kept_share_of_harvested": funnel["kept_share_of_harvested"],
        "kept_share_of_candidates": round(stages["deduped"] / max(stages["decontaminated"], 1), 4),
        "funnel": funnel["stages"], "drops": funnel["drops"],
    }))


if __name__ == "__main__":
    main()
