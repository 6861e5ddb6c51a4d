"""The docstring <-> function instruction source: found by `ast`, two rows per function, stable splits."""
from __future__ import annotations

import json

import pytest

from case2code_finetune.instruct import build_instruction_set
from patch_training.errors import UserError

SOURCE = '''
import os

def add_offset(x, offset=3):
    """Return x shifted by the given offset value."""
    y = x + offset
    return y


def _private(x):
    """Private helpers are not instructions at all."""
    return x


def undocumented(x):
    return x * 2


@staticmethod
def decorated(x):
    """Decorated functions are skipped by this extractor."""
    return x


def only_doc(x):
    """A function whose body is nothing but this docstring."""


class Box:
    def method(self):
        """Methods are not top-level functions and are skipped."""
        return 1
'''


def test_two_rows_per_documented_function_and_a_stable_split(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "mod.py").write_text(SOURCE)
    (root / "copy.py").write_text(SOURCE)        # the same function twice is kept once
    (root / "broken.py").write_text("def (:\n")  # unparsable files are skipped
    manifest = build_instruction_set(tmp_path / "out", roots=[root], validation_fraction=0.0, test_fraction=0.0)
    assert manifest["functions"] == 1 and manifest["duplicates_skipped"] == 1
    rows = [json.loads(l) for l in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"doc2func", "func2doc"}
    d2f, f2d = by_kind["doc2func"], by_kind["func2doc"]
    assert "Return x shifted by the given offset value." in d2f["prompt"] and "add_offset" in d2f["prompt"]
    assert d2f["output"].startswith("```python\ndef add_offset(x, offset=3):") and "return y" in d2f["output"]
    assert f2d["output"] == "Return x shifted by the given offset value."
    assert '"""' not in f2d["prompt"] and "y = x + offset" in f2d["prompt"]
    # A rerun with the same options is skipped; other options into the same dir are refused.
    assert build_instruction_set(tmp_path / "out", roots=[root], validation_fraction=0.0,
                                 test_fraction=0.0) == manifest
    with pytest.raises(UserError, match="other options"):
        build_instruction_set(tmp_path / "out", roots=[root], validation_fraction=0.5, test_fraction=0.0)
    with pytest.raises(UserError, match="no documented"):
        build_instruction_set(tmp_path / "empty", roots=[tmp_path / "out"])
