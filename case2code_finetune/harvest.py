"""CLI: harvest functions into the official raw shape (`id`, `content`, `import_code` + provenance).

    python -m case2code_finetune.harvest [--source DIR ...] --out F.jsonl [--max_functions N]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from patch_training.errors import UserError, run_cli


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(prog="python -m case2code_finetune.harvest", description=__doc__.split("\n")[0])
    p.add_argument("--source", action="append", default=[], help="source tree (repeatable); default: stdlib + "
                                                                   "site-packages")
    p.add_argument("--out", required=True)
    p.add_argument("--max_functions", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test_set", default="default", help="Case2Code test.jsonl to decontaminate against")
    p.add_argument("--no_decontaminate", action="store_true")
    args = p.parse_args(argv)
    from case2code_finetune.decontaminate import Decontaminator, default_test_set  # noqa: PLC0415
    from case2code_finetune.harvester import default_sources, harvest_functions, python_files  # noqa: PLC0415
    from case2code_finetune.jsonl_io import write_atomic  # noqa: PLC0415
    from case2code_finetune.progress import Progress  # noqa: PLC0415

    sources = [Path(s) for s in args.source] or default_sources()
    for s in sources:
        if not s.is_dir():
            raise UserError(f"source directory does not exist: {s}")
    decon = None
    if not args.no_decontaminate:
        path = default_test_set() if args.test_set == "default" else Path(args.test_set)
        if path is None or not Path(path).exists():
            raise UserError(f"Case2Code test set not found ({args.test_set}); pass --test_set or --no_decontaminate")
        decon = Decontaminator.from_jsonl(path)
    counts: Counter = Counter()
    prog = (Progress("harvest (functions kept)", args.max_functions) if args.max_functions
            else Progress("harvest (files)", len(python_files(sources, Counter()))))
    n = write_atomic(args.out, harvest_functions(sources, counts=counts, decontaminator=decon,
                                                 max_functions=args.max_functions, seed=args.seed, progress=prog))
    prog.finish()
    print(json.dumps({"functions": n, **dict(sorted(counts.items()))}))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:], prog="case2code_finetune.harvest")
