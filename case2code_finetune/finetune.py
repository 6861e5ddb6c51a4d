"""`python -m case2code_finetune.finetune --gin_file=... --gin.MODEL_DIR=... --gin.INIT_CHECKPOINT=...`

Fine-tunes a pretrained checkpoint (a trainer run dir such as the main job's `stage2_token/`, or
a params checkpoint, e.g. from `patch_training.hf_convert import`) on prompt/answer rows with
the answer-only loss, with the pre-training trainer. Rerun the same command to resume.
Experiments: `configs/experiments/case2code/` (direct, mixed pre-training, mixed instruction
fine-tuning). Multi-host flags are the trainer's (see `python -m patch_training.train --help`).
"""
from __future__ import annotations

import sys
from typing import Sequence

from patch_training.errors import run_cli

PROG = "python -m case2code_finetune.finetune"


def main(argv: Sequence[str] | None = None) -> int:
    from patch_training.gin_utils import call_configured, parse_gin
    from patch_training.main.cli import parse_gin_command_line
    from patch_training.main.runtime import add_runtime_flags, setup_logging, setup_runtime

    args, bindings = parse_gin_command_line(
        sys.argv[1:] if argv is None else list(argv), prog=PROG, doc=__doc__, add_flags=add_runtime_flags,
        example_gin_file="configs/experiments/case2code/direct_small_cpu.gin")
    setup_logging()
    setup_runtime(args)
    import case2code_finetune.configurables  # noqa: F401  (every name a fine-tuning gin file may bind)
    parse_gin(args.gin_file, bindings, args.gin_search_path)
    from case2code_finetune.finetuning import run_finetune
    call_configured(run_finetune)
    return 0


if __name__ == "__main__":
    run_cli(main, prog=PROG)
