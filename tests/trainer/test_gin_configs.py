"""Every gin file under configs/ parses; misconfiguration fails with one line that names it."""
from pathlib import Path

import pytest

import patch_training.configurables  # noqa: F401  (registers every configurable a run file may bind)
from patch_training.errors import UserError
from patch_training.gin_utils import CONFIG_ROOT, parse_gin

GIN_FILES = sorted(str(p) for p in CONFIG_ROOT.rglob("*.gin"))
EXPERIMENT = str(CONFIG_ROOT / "experiments" / "tiny_cpu.gin")


def test_every_gin_file_under_configs_parses():
    assert any("experiments" in f for f in GIN_FILES) and any("mesh" in f for f in GIN_FILES)
    failures = []
    for f in GIN_FILES:
        try:
            parse_gin([f], finalize=False)  # syntax, includes and every configurable name resolve
        except UserError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_unknown_binding_fails_with_one_line_naming_it():
    with pytest.raises(UserError) as e:
        parse_gin([EXPERIMENT], ["MODEL_DIR = '/tmp/x'", "trainer.TrainerConfig.num_stepz = 3"])
    msg = str(e.value)
    assert "\n" not in msg and "num_stepz" in msg


def test_unknown_configurable_in_file_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.gin"
    bad.write_text(f"include '{EXPERIMENT}'\nno_such_thing.value = 1\n")
    with pytest.raises(UserError) as e:
        parse_gin([str(bad)], ["MODEL_DIR = '/tmp/x'"])
    msg = str(e.value)
    assert "\n" not in msg and "bad.gin" in msg and "no_such_thing" in msg


def test_missing_required_macro_fails_with_one_line_naming_it():
    with pytest.raises(UserError) as e:
        parse_gin([EXPERIMENT])
    msg = str(e.value)
    assert "\n" not in msg and "MODEL_DIR" in msg and "--gin.MODEL_DIR" in msg


def test_required_binding_left_unset_names_it():
    # The 370M experiment needs a tokenizer path bound to %gin.REQUIRED.
    with pytest.raises(UserError) as e:
        parse_gin([str(CONFIG_ROOT / "experiments" / "baseline_370m_tpu.gin")], ["MODEL_DIR = '/tmp/x'"])
    msg = str(e.value)
    assert "\n" not in msg and "get_vocabulary.model_path" in msg and "binding" in msg

