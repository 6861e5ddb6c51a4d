"""The two prompts asked per item: the question alone, and the question after a context.

The shape follows the official scripts (an instruction to answer in one word, the subject line for the
question-only prompt, tagged context / question fields, an answer cue), worded our own way. With a chat
model the backend wraps the text in the model's chat template (`Sampling(chat=True)`); a base model
gets the text as is.
"""
from __future__ import annotations

from evals.dynamicqa.data import FactItem

Q_ONLY = "q_only"
CONTEXT = "context"
CONDITIONS = (Q_ONLY, CONTEXT)


def question_only_prompt(item: FactItem) -> str:
    return ("Answer the question below with a single word.\n"
            f"This text is about {item.subj}.\n"
            f"[Question]: {item.question}\n"
            "[Answer]:")


def context_prompt(item: FactItem, variant: str) -> str:
    return ("Read the context, then answer the question below with a single word.\n"
            f"[Context]: {item.contexts[variant]}\n"
            f"[Question]: {item.question}\n"
            "[Answer]:")

