"""One name per length concept (issue 8, item 6): an old gin binding gets one line naming the new one,
and run dirs written under the old metadata keys still resume."""
from __future__ import annotations

import json

import pytest

from patch_training import configurables  # noqa: F401  (registers the configurables the bindings name)
from patch_training import two_stage_training as two_stage
from patch_training.checkpointing import fingerprint_differences
from patch_training.errors import UserError
from patch_training.gin_utils import parse_gin
from patch_training.legacy_names import (RENAMED_GIN_PARAMETERS, RENAMED_METADATA_KEYS, upgrade_metadata,
                                         upgrade_plan_record)
from patch_training.trainer import TrainerConfig

# The retired spellings come from the one table that keeps them, so that this file holds no old name.
OLD_TOKENS_PER_ROW = next(old for old, new in RENAMED_GIN_PARAMETERS.items() if new == "sequence_length")
OLD_PATCH_ROW = next(old for old, new in RENAMED_GIN_PARAMETERS.items() if new == "patch_sequence_length")
OLD_STAGE_ROW = next(old for old, new in RENAMED_METADATA_KEYS.items() if old != OLD_TOKENS_PER_ROW)


@pytest.mark.parametrize("binding, new", [
    (f"trainer.TrainerConfig.{OLD_TOKENS_PER_ROW}=128", "trainer.TrainerConfig.sequence_length"),
    (f"two_stage_training.TwoStageConfig.{OLD_PATCH_ROW}=512", "two_stage_training.TwoStageConfig.patch_sequence_length"),
    (f"TrainerConfig.{OLD_TOKENS_PER_ROW}=128", "TrainerConfig.sequence_length"),
])
def test_an_old_flag_binding_names_the_new_one(binding, new):
    with pytest.raises(UserError) as e:
        parse_gin([], [binding], finalize=False)
    message = str(e.value)
    assert f"bind {new} instead" in message and "\n" not in message


def test_an_old_binding_in_a_gin_file_names_the_new_one(tmp_path):
    path = tmp_path / "old.gin"
    path.write_text(f"trainer.TrainerConfig.{OLD_TOKENS_PER_ROW} = 64\n")
    with pytest.raises(UserError, match=r"bind trainer\.TrainerConfig\.sequence_length instead") as e:
        parse_gin([str(path)], finalize=False)
    assert str(path) in str(e.value)


def test_an_unknown_parameter_that_was_never_renamed_gets_no_hint():
    with pytest.raises(UserError) as e:
        parse_gin([], ["trainer.TrainerConfig.no_such_field=1"], finalize=False)
    assert "renamed" not in str(e.value)


def test_an_old_checkpoint_fingerprint_still_matches():
    cfg = TrainerConfig(num_steps=2, batch_size=4, sequence_length=32)
    current = {"patch_size": 1, "sequence_length": cfg.sequence_length, "batch_size": 4}
    old = {"patch_size": 1, OLD_TOKENS_PER_ROW: 32, "batch_size": 4}
    assert fingerprint_differences(old, current) == []
    # The upgrade renames, it does not hide a real difference.
    assert fingerprint_differences({**old, OLD_TOKENS_PER_ROW: 64}, current) == [
        "sequence_length (saved 64, now 32)"]


def test_an_old_two_stage_plan_file_is_accepted_and_rewritten(tmp_path):
    cfg = two_stage.TwoStageConfig(token_budget=8192, sequence_length=16, batch_size=4, patch_size=4)
    plans = cfg.plan()
    record = two_stage.plan_record(cfg, plans, seed=0)
    old = json.loads(json.dumps(record).replace('"sequence_length"', f'"{OLD_TOKENS_PER_ROW}"', 1))
    del old["patch_batch_size"]   # nor did such a record have B1 outside its stages
    for stage in old["stages"]:
        stage[OLD_STAGE_ROW] = stage.pop("sequence_length")
    assert upgrade_plan_record(old) == record
    assert upgrade_metadata(old) == {k: v for k, v in record.items() if k != "patch_batch_size"}
    (tmp_path / two_stage.PLAN_FILE).write_text(json.dumps(old))
    two_stage._check_plan(tmp_path, record)
    assert json.loads((tmp_path / two_stage.PLAN_FILE).read_text()) == record
    # A plan that really differs is still refused.
    with pytest.raises(UserError, match="differs in token_budget"):
        two_stage._check_plan(tmp_path, {**record, "token_budget": 4096})
