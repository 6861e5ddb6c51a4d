"""Completeness manifests for checkpoint step directories.

Orbax marks a step finished by an atomic rename (or a `commit_success.txt` on object stores), but
nothing notices a file that was truncated or removed after the fact, and a bit flip in a raw chunk
can restore silently as wrong numbers. So, just before orbax commits a step, we write
`patchtrain_manifest.json` into it: the size and CRC32 of every file. A step directory counts as
*complete* only when the manifest is present, every listed file exists with its recorded size, and
orbax's own commit marker is there. Checksums are verified only for the step actually restored.

This module is pure filesystem logic (no JAX), so the checkpoint opener (`contract.checkpoint`) and
tools can use `latest_complete_step` without building a checkpoint manager. Paths go through `etils.epath`
(what orbax uses), so `gs://` run directories work as well as local ones.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from typing import Iterable

from etils import epath

Path = epath.Path

MANIFEST_NAME = "patchtrain_manifest.json"
ORBAX_COMMIT_MARKER = "commit_success.txt"
ORBAX_TMP_MARKER = ".orbax-checkpoint-tmp"
# Step-level files orbax (re)writes while committing, after our manifest: not size-checked.
_COMMIT_TIME_FILES = frozenset({ORBAX_COMMIT_MARKER, "_CHECKPOINT_METADATA"})
_STEP_DIR = re.compile(r"^\d+$")
_CHUNK = 8 << 20


def file_size(path: Path) -> int:
    st = epath.Path(path).stat()
    return st.st_size if hasattr(st, "st_size") else st.length


def _mtime(path: Path) -> float:
    st = path.stat()
    return st.st_mtime if hasattr(st, "st_mtime") else st.mtime


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _listed_files(step_dir: Path) -> Iterable[Path]:
    step_dir = epath.Path(step_dir)
    for root, _, files in step_dir.walk():
        for name in files:
            if name.startswith(MANIFEST_NAME) or (root == step_dir and name in _COMMIT_TIME_FILES):
                continue
            yield root / name


def write_manifest(step_dir: Path, step: int, *, checksums: bool = True) -> dict:
    """Record size (and CRC32) of every file under `step_dir`; written atomically via rename."""
    step_dir = epath.Path(step_dir)
    files = {}
    for path in sorted(_listed_files(step_dir)):
        rel = path.relative_to(step_dir).as_posix()
        entry = {"size": file_size(path)}
        if checksums:
            entry["crc32"] = file_crc32(path)
        files[rel] = entry
    manifest = {"format": 1, "step": step, "checksums": checksums, "files": files}
    tmp = step_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, sort_keys=True))
    tmp.replace(step_dir / MANIFEST_NAME)
    return manifest


def read_manifest(step_dir: Path) -> dict | None:
    step_dir = epath.Path(step_dir)
    try:
        manifest = json.loads((step_dir / MANIFEST_NAME).read_text())
    except Exception:  # noqa: BLE001 - missing/garbled; object-store backends raise their own types
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def incompleteness(step_dir: Path) -> str | None:
    """Why `step_dir` is not a complete checkpoint (cheap: stats only), or None if it is."""
    step_dir = epath.Path(step_dir)
    if not step_dir.is_dir():
        return "not a directory"
    if not (step_dir / ORBAX_COMMIT_MARKER).exists():
        return f"no {ORBAX_COMMIT_MARKER} (orbax never committed it)"
    manifest = read_manifest(step_dir)
    if manifest is None:
        return f"missing or unreadable {MANIFEST_NAME} (killed before the save finished)"
    for rel, entry in manifest["files"].items():
        path = step_dir / rel
        try:
            size = file_size(path)
        except Exception:  # noqa: BLE001 - as above
            return f"file {rel} is missing"
        if size != entry.get("size"):
            return f"file {rel} has {size} bytes, expected {entry.get('size')} (truncated?)"
    return None


def checksum_mismatches(step_dir: Path) -> list[str]:
    """Files whose CRC32 differs from the manifest (reads every byte; call before restoring)."""
    step_dir = epath.Path(step_dir)
    manifest = read_manifest(step_dir)
    if manifest is None:
        return [MANIFEST_NAME]
    bad = []
    for rel, entry in manifest["files"].items():
        if "crc32" not in entry:
            continue
        path = step_dir / rel
        try:
            if file_crc32(path) != entry["crc32"]:
                bad.append(rel)
        except Exception:  # noqa: BLE001 - as above
            bad.append(rel)
    return bad


def step_dirs(checkpoint_dir: Path) -> dict[int, Path]:
    """All directories named like a step (complete or not), by step number."""
    checkpoint_dir = epath.Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return {}
    return {int(p.name): p for p in checkpoint_dir.iterdir() if _STEP_DIR.match(p.name) and p.is_dir()}


def tmp_dirs(checkpoint_dir: Path) -> list[Path]:
    """Orbax's in-progress directories (`<step>.orbax-checkpoint-tmp...`): never committed."""
    checkpoint_dir = epath.Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.iterdir() if ORBAX_TMP_MARKER in p.name)


def complete_steps(checkpoint_dir: str | os.PathLike) -> list[int]:
    """Steps under `checkpoint_dir` that are complete, ascending."""
    dirs = step_dirs(checkpoint_dir)
    return sorted(step for step, path in dirs.items() if incompleteness(path) is None)


def latest_complete_step(checkpoint_dir: str | os.PathLike) -> int | None:
    """The newest complete step under `checkpoint_dir` (e.g. `<run_dir>/checkpoints`), or None."""
    steps = complete_steps(checkpoint_dir)
    return steps[-1] if steps else None


def writing_dir_for_step(checkpoint_dir: Path, step: int) -> Path | None:
    """Where orbax is writing `step` right before its commit: the tmp dir, else the final dir."""
    checkpoint_dir = epath.Path(checkpoint_dir)
    candidates = [p for p in tmp_dirs(checkpoint_dir) if p.name.split(".", 1)[0] == str(step)]
    if candidates:
        return max(candidates, key=_mtime)
    final = checkpoint_dir / str(step)
    return final if final.is_dir() else None
