"""Import every module whose gin configurables a fine-tuning gin file may bind (before parsing)."""
from __future__ import annotations

import patch_training.configurables  # noqa: F401  (trainer, optimizer, model, data factory, vocab)
from case2code_finetune import finetuning, mixtures, prompt_rows, tasks  # noqa: F401
