"""The fine-tuning CLI with a slowed input pipeline (FT_TEST_DELAY_S per batch), so a test can kill it mid-run."""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from case2code_finetune.prompt_rows import PromptAnswerDataset  # noqa: E402
from patch_training.errors import run_cli  # noqa: E402

_delay = float(os.environ.get("FT_TEST_DELAY_S", "0"))
_host_batch = PromptAnswerDataset.host_batch


def _slow_host_batch(self, *args, **kwargs):
    time.sleep(_delay)
    return _host_batch(self, *args, **kwargs)


if _delay:
    PromptAnswerDataset.host_batch = _slow_host_batch

if __name__ == "__main__":
    from case2code_finetune.finetune import main
    run_cli(main, prog="python -m case2code_finetune.finetune")
