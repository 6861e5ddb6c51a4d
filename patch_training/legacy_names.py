"""Names retired by the sequence-length rename, and how old bindings and old run dirs map to the new ones.

The house has two length concepts and one name for each:
- `sequence_length`: tokens per row (seqio's name; the gin macro `SEQUENCE_LENGTH`); K·T in a
  patch stage, T at token level;
- `network_length`: positions inside the network, i.e. tokens per row / K (what attention and the
  FLOP formulas see).
`ModelConfig.max_seq_len` is neither: it is the positional capacity of the model (HF's
`max_position_embeddings`) and keeps its name.

The same goes for a retired default: until issue 25 the patch stage took B2 rows per step (K x the
tokens of a token step) unless B1 was given, and `two_stage.json` recorded B1 only inside its stage
list. `upgrade_plan_record` gives such a record the top-level `patch_batch_size` today's records
carry, so an old run dir resumes with the B1 it was planned with.

And for the gin names retired when every configurable took its module's name (issue 29):
`two_stage.*` -> `two_stage_training.*`, `mesh.mesh_shape` -> `partitioning.mesh_shape`,
`trainer.run_training` -> `training.run_training`, `finetune.run_finetune` -> `finetuning.run_finetune`;
the modules that only forwarded names (`patch_training.mesh`, `patch_training.sharding`) are gone.

This module is the only place that spells the old names. A gin binding that uses one fails with
gin's own error plus a line that names the new binding; metadata that older runs wrote into their
run dirs (checkpoint fingerprints, `two_stage.json`) is read through `upgrade_metadata` so that
resuming an existing run dir still works.
"""
from __future__ import annotations

import re
from typing import Any

# Old gin parameter name -> new one (on `trainer.TrainerConfig` and `two_stage_training.TwoStageConfig`).
RENAMED_GIN_PARAMETERS = {"seq_len": "sequence_length", "patch_seq_len": "patch_sequence_length"}

# Old run-dir metadata key -> new one: the trainer's checkpoint fingerprint and the two-stage plan
# record wrote `seq_len`; the plan's stages wrote `tokens_per_row`.
RENAMED_METADATA_KEYS = {"seq_len": "sequence_length", "tokens_per_row": "sequence_length"}

# Old gin configurable name -> the one named after its module.
RENAMED_CONFIGURABLES = {"two_stage.TwoStageConfig": "two_stage_training.TwoStageConfig",
                         "two_stage.run_experiment": "two_stage_training.run_experiment",
                         "mesh.mesh_shape": "partitioning.mesh_shape",
                         "trainer.run_training": "training.run_training",
                         "finetune.run_finetune": "finetuning.run_finetune"}
# Modules gin files imported only for a retired name -> the module to import instead.
RETIRED_MODULES = {"patch_training.mesh": "patch_training.partitioning",
                   "patch_training.sharding": "patch_training.partitioning"}

_GIN_NO_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?(?:[\w.]+/)*(?P<name>[\w.]+?)(?:\(\))?'")
_NO_MODULE = re.compile(r"No module named '(?P<module>[\w.]+)'")
_GIN_UNKNOWN_PARAMETER = re.compile(r"Configurable '(?P<configurable>[\w.]+)' doesn't have a parameter named "
                                    r"'(?P<param>\w+)'")


def renamed_binding_hint(gin_error: str) -> str | None:
    """One line naming the new binding when gin refused a binding for using a retired name, else None."""
    found = _GIN_NO_CONFIGURABLE.search(gin_error)
    if found and found.group("name") in RENAMED_CONFIGURABLES:
        return f"{found.group('name')} was renamed after its module: bind {RENAMED_CONFIGURABLES[found.group('name')]} instead"
    found = _NO_MODULE.search(gin_error)
    if found and found.group("module") in RETIRED_MODULES:
        return (f"module {found.group('module')} is gone: import {RETIRED_MODULES[found.group('module')]} instead "
                "(the mesh binds as partitioning.mesh_shape)")
    found = _GIN_UNKNOWN_PARAMETER.search(gin_error)
    if not found or found.group("param") not in RENAMED_GIN_PARAMETERS:
        return None
    configurable, old = found.group("configurable"), found.group("param")
    return f"{configurable}.{old} was renamed: bind {configurable}.{RENAMED_GIN_PARAMETERS[old]} instead"


def upgrade_metadata(record: Any) -> Any:
    """`record` (JSON-like) with retired keys renamed, recursively; new keys win over old ones."""
    if isinstance(record, dict):
        out = {}
        for key, value in record.items():
            new_key = RENAMED_METADATA_KEYS.get(key, key)
            if new_key != key and new_key in record:
                continue
            out[new_key] = upgrade_metadata(value)
        return out
    if isinstance(record, list):
        return [upgrade_metadata(v) for v in record]
    return record


def upgrade_plan_record(record: Any) -> Any:
    """A `two_stage.json` record in today's form: retired keys renamed, and `patch_batch_size` (the
    rows per patch step the plan used; None without a patch stage) filled from the recorded stages
    when the record predates that key."""
    out = upgrade_metadata(record)
    if isinstance(out, dict) and "patch_batch_size" not in out:
        patch = [s for s in out.get("stages") or [] if isinstance(s, dict) and s.get("index") == 1]
        out["patch_batch_size"] = patch[0].get("batch_size") if patch else None
    return out
