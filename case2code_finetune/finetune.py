"""`python -m case2code_finetune.finetune --gin_file=... --gin.MODEL_DIR=... --gin.INIT_CHECKPOINT=...`

Fine-tunes a pretrained checkpoint (a trainer run dir such as the main job's `stage2_token/`, or
a params checkpoint, e.g. from `patch_training.hf_convert import`) on prompt/answer rows with
the answer-only loss, with the pre-training trainer. Rerun the same command to resume.
Experiments: `configs/experiments/case2code/` (direct, mixed pre-training, mixed instruction
fine-tuning). Multi-host flags are the trainer's (see `python -m patch_training.train --help`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from patch_training.errors import UserError, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from patch_training.gin_utils import add_gin_flags, call_configured, parse_gin, split_gin_bindings
    from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

    bindings, rest = split_gin_bindings(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(prog="python -m case2code_finetune.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    add_runtime_flags(parser)
    args = parser.parse_args(rest)
    if not args.gin_file:
        raise UserError("no --gin_file given (e.g. --gin_file=configs/experiments/case2code/direct_small_cpu.gin)")
    setup_logging()
    setup_runtime(args)
    import case2code_finetune.configurables  # noqa: F401  (every name a fine-tuning gin file may bind)
    parse_gin(args.gin_file, bindings, args.gin_search_path)
    from case2code_finetune.finetuning import run_finetune
    call_configured(run_finetune)
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m case2code_finetune.finetune")
