"""CLI: the whole Case2Code synthesis in one command (see `pipeline`).

    python -m case2code_finetune.synthesize --out DIR [--source DIR ...] [--inputs typed|llm|both]
        [--endpoint URL [--model_name NAME] | --checkpoint DIR] [--max_functions N] [--official_filter]
"""
from __future__ import annotations

import argparse
import logging
import sys

from patch_training.errors import UserError, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m case2code_finetune.synthesize", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory (resumable; holds work/ while running)")
    p.add_argument("--source", action="append", default=[],
                   help="source tree to harvest (repeatable); default: the stdlib and site-packages")
    p.add_argument("--inputs", choices=("typed", "llm", "both"), default="typed")
    p.add_argument("--endpoint", help="OpenAI-compatible base URL for --inputs llm/both")
    p.add_argument("--model_name", help="model name to request from --endpoint")
    p.add_argument("--checkpoint", help="our own checkpoint (run dir) for --inputs llm/both")
    p.add_argument("--hf_dir", help="a Hugging Face model directory for --inputs llm/both")
    p.add_argument("--cache_dir", help="generation cache directory (passed to the model backend)")
    p.add_argument("--max_functions", type=int, default=None, help="stop harvesting after N functions")
    p.add_argument("--official_filter", action="store_true",
                   help="the paper's keep rule (drop only failed / all-exception functions) instead of ours")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test_set", default="default", help="Case2Code test.jsonl to decontaminate against")
    p.add_argument("--no_decontaminate", action="store_true")
    p.add_argument("--test_fraction", type=float, default=0.1)
    p.add_argument("--validation_fraction", type=float, default=0.05)
    p.add_argument("--min_test", type=int, default=500, help="at least this many test functions when possible")
    p.add_argument("--by_module", action="store_true", help="module-disjoint splits")
    p.add_argument("--train_prompts", type=int, default=2, help="training prompt variants per function")
    p.add_argument("--wall_s", type=float, default=2.0, help="sandbox wall-clock limit per call")
    p.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    from case2code_finetune.pipeline import SynthesisConfig, format_funnel, synthesize  # noqa: PLC0415

    chosen = [x for x in (args.endpoint, args.checkpoint, args.hf_dir) if x]
    if len(chosen) > 1:
        raise UserError("give one of --endpoint, --checkpoint, --hf_dir")
    model, model_id = None, None
    if args.inputs != "typed":
        if not chosen:
            raise UserError("--inputs llm/both needs --endpoint URL, --checkpoint DIR or --hf_dir DIR")
        from case2code_finetune.llm_inputs import open_language_model  # noqa: PLC0415
        try:
            model = open_language_model(checkpoint=args.checkpoint, endpoint=args.endpoint, hf_dir=args.hf_dir,
                                        model_name=args.model_name, cache_dir=args.cache_dir)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. an endpoint that refuses: one line, not a traceback
            raise UserError(f"cannot open the model ({chosen[0]}): "
                            f"{type(e).__name__}: {e}".splitlines()[0]) from e
        model_id = getattr(model, "fingerprint", None) or chosen[0]
    if args.max_functions is not None and args.max_functions < 1:
        raise UserError("--max_functions must be >= 1")
    cfg = SynthesisConfig(
        out=args.out, sources=args.source, inputs=args.inputs, max_functions=args.max_functions,
        official_filter=args.official_filter, seed=args.seed,
        test_set=None if args.no_decontaminate else args.test_set, test_fraction=args.test_fraction,
        validation_fraction=args.validation_fraction, min_test=args.min_test, by_module=args.by_module,
        train_prompts_per_function=args.train_prompts, wall_s=args.wall_s, num_workers=args.workers,
        model_id=model_id)
    funnel = synthesize(cfg, model=model)
    print(format_funnel(funnel))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:], prog="case2code_finetune.synthesize")
