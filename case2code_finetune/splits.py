"""Train / validation / test by function hash (or by module, so no module spans two splits), and the rows
of each split: official-format rows for validation and test, varied prompts for train."""
from __future__ import annotations

import hashlib
import math
import random

from case2code_finetune import prompt_render as pr
from case2code_finetune.input_values import parse_kwargs_source

MIN_TEST_FUNCTIONS = 500


def _unit(record: dict, by_module: bool) -> str:
    return record["module"] if by_module else record["fn_hash"]


def _h(text: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def assign_splits(records: list[dict], *, test_fraction: float = 0.1, validation_fraction: float = 0.05,
                  min_test: int = MIN_TEST_FUNCTIONS, by_module: bool = False, seed: int = 0) -> dict[str, str]:
    """-> record id -> split. Units (functions, or modules) are ordered by a seeded hash and dealt out test
    first: at least `min_test` functions (or `test_fraction`, whichever is more) while that leaves at least
    half the data for training; then validation; the rest is train. A unit never spans splits."""
    n = len(records)
    want_test = min(max(min_test, math.ceil(test_fraction * n)), n // 2 if n >= 4 else 0)
    want_val = math.ceil(validation_fraction * n) if n >= 4 else 0
    units: dict[str, list[dict]] = {}
    for r in records:
        units.setdefault(_unit(r, by_module), []).append(r)
    order = sorted(units, key=lambda u: _h(u, seed))
    out, n_test, n_val = {}, 0, 0
    for u in order:
        group = units[u]
        if n_test < want_test:
            split, n_test = "test", n_test + len(group)
        elif n_val < want_val:
            split, n_val = "validation", n_val + len(group)
        else:
            split = "train"
        for r in group:
            out[r["id"]] = split
    return out


def _shown_indices(n: int, rng: random.Random, *, hold_out: bool) -> list[int]:
    """m uniform in 3..n (3..n-1 for eval rows, so at least one input stays hidden), in random order."""
    hi = n - 1 if hold_out and n > 3 else n
    m = rng.randint(min(3, hi), hi)
    return rng.sample(range(n), m)


def official_row(record: dict, seed: int = 0) -> dict:
    """A row with exactly the official test fields and prompt format."""
    rng = random.Random(_h(record["id"], seed))
    inputs = record["inputs"]
    idx = _shown_indices(len(inputs), rng, hold_out=True)
    shown = [(inputs[i], record["example_outputs"][i]) for i in idx]
    return {
        "example_str": record["example_str"], "code": record["code"], "func_name": record["func_name"],
        "exec_status": True, "example_inputs": record["example_inputs"],
        "example_outputs": record["example_outputs"], "parsed_inputs": record["parsed_inputs"],
        "exec_code": record["code"], "output": pr.answer_text(record["code"]), "choosed_example_idx": idx,
        "prompt": pr.official_prompt(record["func_name"], shown, rng), "id": f"{record['id']}_0",
    }


def training_rows(record: dict, n_variants: int, seed: int = 0) -> list[dict]:
    rows = []
    for k in range(n_variants):
        rng = random.Random(_h(f"{record['id']}#{k}", seed))
        kwargs = [parse_kwargs_source(t) for t in record["inputs"]]
        idx = _shown_indices(len(kwargs), rng, hold_out=False)
        shown = [(record["inputs"][i], kwargs[i], record["example_outputs"][i]) for i in idx]
        rows.append({"id": f"{record['id']}_{k}", "prompt": pr.training_prompt(record["func_name"], shown, rng),
                     "output": pr.answer_text(record["code"]), "func_name": record["func_name"],
                     "choosed_example_idx": idx, "source_function": record["id"]})
    return rows
