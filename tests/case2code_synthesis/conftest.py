"""One synthesis of the planted tree per session (it starts three sandbox pools), shared by the tests."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest



def stolen_test_function() -> str:
    """The first Case2Code test function that would pass every harvest filter on its own (a real copy)."""
    from case2code_finetune import function_filters as ff
    from case2code_finetune.free_names import ModuleIndex, resolve
    from patch_training.shared_data import shared_data_dir

    path = Path(shared_data_dir()) / "case2code" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"Case2Code test set not found at {path} (set PATCHTRAIN_SHARED_DATA)")
    for line in open(path, encoding="utf-8"):
        code = json.loads(line)["code"]
        try:
            body = ast.parse(code).body
        except SyntaxError:
            continue
        if len(body) == 1 and isinstance(body[0], ast.FunctionDef) \
                and ff.structural_reason(body[0], code) is None \
                and resolve(body[0], ModuleIndex({}, {}, {}, set())).reason is None:
            return code
    pytest.skip("no self-contained function in the Case2Code test set")


def settings(out: Path, src: Path, **kw):
    from case2code_finetune.pipeline import SynthesisConfig

    base = dict(out=str(out), sources=[str(src)], inputs="typed", min_test=2, test_fraction=0.3,
                validation_fraction=0.15, num_workers=2, wall_s=1.0)
    base.update(kw)
    return SynthesisConfig(**base)


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    from tests.case2code_synthesis.tree import write_tree

    root = tmp_path_factory.mktemp("c2c_tree")
    return write_tree(root, stolen_test_function())


@pytest.fixture(scope="session")
def synthesis(planted, tmp_path_factory):
    from case2code_finetune.pipeline import synthesize

    out = tmp_path_factory.mktemp("c2c_out") / "data"
    funnel = synthesize(settings(out, planted))
    return out, funnel
