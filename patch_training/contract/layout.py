"""Where a run writes: its stage dirs, its eval dirs, the one generation-cache name, and the manifest of
the models it produced.

Every path under a run root comes from `RunLayout`, so the stages, the demo scripts (through
`python -m patch_training.main.run_layout`) and the report cannot disagree about where a thing is:

  <root>/                            the pre-training run (stage1_patch_k4/, stage2_token/, cost.json)
  <root>/baseline/ smollm2/ case2code_data/ finetune_direct/    the other stages (STAGE_DIRS)
  <root>/evals/<eval>/<model>[/<part>]/record.json              one EvalRecord per eval, model (and data part)
  <root>/manifest.json               the models the run produced, in the order the stages made them

The manifest is how a later stage learns which models exist: each model-making stage adds its model
(name, checkpoint, source, a fingerprint of its files, the stage) and the eval stages and the report read
the list instead of naming models themselves.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from patch_training.atomic import write_json_atomic
from patch_training.errors import UserError

CACHE_NAME = "gen_cache"        # an eval's generation cache, inside its output dir
RECORD_NAME = "record.json"     # an eval's EvalRecord, inside its output dir
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
EVALS_DIR = "evals"
STAGE_LOG = "demo_stages.jsonl"  # scripts/demo.sh: one line per finished stage
# Stage name -> where it writes under the root. The pre-training run owns the root itself (its two stages
# and cost.json sit there), as the gin MODEL_DIR of stage 10 is the root.
STAGE_DIRS = {
    "pretrain": ".",
    "pretrained": "smollm2",
    "baseline": "baseline",
    "case2code_data": "case2code_data",
    "finetune": "finetune_direct",
}
STAGE_FILES = {
    "prompts": "demo_prompts.jsonl",
    "samples": "demo_samples.jsonl",
    "stage_log": STAGE_LOG,
}
MODEL_KINDS = ("trained", "pretrained")   # made by this run / brought in from outside (a GGUF, an HF dir)


def cache_dir(out_dir: str | Path) -> Path:
    """The generation cache of an eval writing into `out_dir` (the one name every eval uses)."""
    return Path(out_dir) / CACHE_NAME


def record_file(out_dir: str | Path) -> Path:
    """The EvalRecord of an eval writing into `out_dir`."""
    return Path(out_dir) / RECORD_NAME


def files_fingerprint(path: str | Path) -> str:
    """16 hex digits of sha256 over a file's bytes, or over every file under a directory (relative path,
    length, bytes; in path order; hidden names skipped): the identity of what a model was saved as."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"cannot fingerprint {path}: it does not exist")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                               p.relative_to(path).parts))
    h = hashlib.sha256()
    for f in files:
        h.update((f.relative_to(path).as_posix() if f != path else f.name).encode() + b"\0")
        h.update(f.stat().st_size.to_bytes(8, "little"))
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or value.startswith("."):
        raise UserError(f"bad {what} name {value!r} for an eval dir (no '/', not empty, no leading '.')")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the run. `checkpoint` is relative to the run root when it lies inside it (so a run dir
    can move); `source` is where an imported model came from (a GGUF file, an HF dir); `info` is free-form
    detail a report may show (the model's shape, a display name)."""
    name: str
    checkpoint: str
    stage: str
    fingerprint: str
    kind: str = "trained"
    source: str | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class RunLayout:
    """The paths of one run root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ stages
    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGE_DIRS:
            raise UserError(f"unknown stage {stage!r}: the run layout knows {', '.join(STAGE_DIRS)}")
        return self.root if STAGE_DIRS[stage] == "." else self.root / STAGE_DIRS[stage]

    def stage_file(self, name: str) -> Path:
        if name not in STAGE_FILES:
            raise UserError(f"unknown run file {name!r}: the run layout knows {', '.join(STAGE_FILES)}")
        return self.root / STAGE_FILES[name]

    # ------------------------------------------------------------------ evals
    def eval_root(self, eval_name: str) -> Path:
        """Where one eval's rows live (and a view across them, such as SolverLearner's combined table)."""
        _check_name("eval", eval_name)
        return self.root / EVALS_DIR / eval_name

    def eval_dir(self, eval_name: str, model: str, part: str | None = None) -> Path:
        _check_name("model", model)
        d = self.eval_root(eval_name) / model
        if part is None:
            return d
        _check_name("part", part)
        return d / part

    def record_path(self, eval_name: str, model: str, part: str | None = None) -> Path:
        return record_file(self.eval_dir(eval_name, model, part))

    def eval_records(self, eval_name: str) -> list[tuple[str, str | None, Path]]:
        """(model, part or None, record path) of every record the eval wrote in this run: the manifest's models
        first, in its order, then any other rows (harness checks) by name; parts by name."""
        base = self.eval_root(eval_name)
        if not base.is_dir():
            return []
        found = []
        for model_dir in (p for p in base.iterdir() if p.is_dir()):
            if record_file(model_dir).is_file():
                found.append((model_dir.name, None, record_file(model_dir)))
            for part_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                if record_file(part_dir).is_file():
                    found.append((model_dir.name, part_dir.name, record_file(part_dir)))
        order = {m.name: i for i, m in enumerate(self.models())}
        return sorted(found, key=lambda f: (order.get(f[0], len(order)), f[0], f[1] or ""))

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def models(self) -> list[ModelEntry]:
        """The manifest's models in the order the stages added them ([] before any stage made one)."""
        path = self.manifest_path
        if not path.is_file():
            return []
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: manifest is not readable JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("schema_version") != MANIFEST_VERSION:
            raise UserError(f"{path}: manifest schema_version {raw.get('schema_version') if isinstance(raw, dict) else None!r}, "
                            f"this code reads {MANIFEST_VERSION}")
        names = {f.name for f in dataclasses.fields(ModelEntry)}
        required = {f.name for f in dataclasses.fields(ModelEntry)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        entries = []
        for i, e in enumerate(raw.get("models", [])):
            if not isinstance(e, dict) or not required <= set(e) or not set(e) <= names:
                got = sorted(e) if isinstance(e, dict) else type(e).__name__
                raise UserError(f"{path}: model {i} is not a manifest entry (needs {', '.join(sorted(required))}; "
                                f"has {got})")
            entries.append(ModelEntry(**e))
        return entries

    def model(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models() if m.name == name), None)

    def checkpoint_path(self, entry: ModelEntry) -> Path:
        p = Path(entry.checkpoint)
        return p if p.is_absolute() else self.root / p

    def add_model(self, name: str, checkpoint: str | Path, stage: str, *, kind: str = "trained",
                  source: str | None = None, info: dict[str, Any] | None = None,
                  fingerprint: str | None = None) -> ModelEntry:
        """Record a model a stage produced (its files' fingerprint unless given). Adding a name again replaces
        the entry in place, so a re-run stage keeps its position in the list."""
        if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
            raise UserError(f"bad model name {name!r} for the manifest (no '/', spaces or leading '.')")
        if kind not in MODEL_KINDS:
            raise UserError(f"model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
        ckpt = Path(checkpoint)
        if not ckpt.exists():
            raise UserError(f"cannot add model {name!r} to {self.manifest_path}: no checkpoint at {ckpt}")
        try:
            stored = ckpt.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            stored = str(ckpt.resolve())
        entry = ModelEntry(name=name, checkpoint=stored, stage=stage,
                           fingerprint=fingerprint or files_fingerprint(ckpt), kind=kind, source=source,
                           info=dict(info or {}))
        models = self.models()
        at = next((i for i, m in enumerate(models) if m.name == name), None)
        if at is None:
            models.append(entry)
        else:
            models[at] = entry
        write_json_atomic(self.manifest_path, {"schema_version": MANIFEST_VERSION,
                                               "models": [dataclasses.asdict(m) for m in models]}, sort_keys=False)
        return entry
