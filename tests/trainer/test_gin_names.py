"""Gin configurables are named after their modules (issue 29), so no module forwards names for gin;
an old name fails with one line naming the new one."""
from __future__ import annotations

import pytest

import case2code_finetune.configurables  # noqa: F401  (every configurable a gin file may bind)
import evals.case2code.finetune_hook  # noqa: F401  (the pass@1 hook runs/finetune.gin hands to the entry)
from patch_training.errors import UserError, one_line
from patch_training.gin_utils import parse_gin
from patch_training.legacy_names import RENAMED_CONFIGURABLES, RETIRED_MODULES

FIRST_PARTY = ("patch_training", "case2code_finetune", "evals")


def test_every_first_party_configurable_is_named_after_its_module():
    from gin import config
    named = {selector: configurable.wrapped.__module__ for selector, configurable in config._REGISTRY.items()
             if configurable.wrapped.__module__.startswith(FIRST_PARTY)}
    assert "training.train" in named and "partitioning.mesh_shape" in named   # the registry is the one we mean
    wrong = {sel: module for sel, module in named.items()
             if not ("." + module).endswith("." + sel.rpartition(".")[0])}
    assert not wrong, f"gin names that are not their module's: {wrong}"


@pytest.mark.parametrize("old, new", sorted(RENAMED_CONFIGURABLES.items()))
def test_an_old_configurable_name_fails_with_one_line_naming_the_new_one(old, new):
    param = "evals_per_stage" if "TwoStageConfig" in old else "data" if "mesh" in old else "model_dir"
    with pytest.raises(UserError) as e:
        parse_gin([], [f"{old}.{param} = 1"], finalize=False)
    assert f"bind {new} instead" in one_line(e.value) and "\n" not in str(e.value)
    parse_gin([], [f"{new}.{param} = 1"], finalize=False)   # the new name is a real configurable


@pytest.mark.parametrize("old, new", sorted(RETIRED_MODULES.items()))
def test_a_gin_file_importing_a_retired_module_names_the_new_one(tmp_path, old, new):
    package, _, module = old.rpartition(".")
    path = tmp_path / "old.gin"
    path.write_text(f"from {package} import {module}\n")
    with pytest.raises(UserError) as e:
        parse_gin([str(path)], finalize=False)
    assert f"import {new} instead" in one_line(e.value) and str(path) in str(e.value)
