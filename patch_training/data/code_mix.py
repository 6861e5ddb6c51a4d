"""A larger code corpus: the standard library plus named installed packages, as JSONL splits.

The default corpus (the interpreter's standard library) holds on the order of ten million tokens,
too few for a compute-optimal run of even a small model. This module adds real code from
site-packages while keeping the house's split rule: a file's split comes from a hash of its path
relative to its root (`corpora.split_files`), so the standard-library files land in exactly the
same train/validation splits as the `code_corpus` source, and a package file's split never moves
when other packages are added.

The mix is written once as `train.jsonl` / `validation.jsonl` under
`<cache>/corpora/<name>-<fingerprint>/` (fingerprint = file names and bytes + options) and then
registered as an ordinary JSONL corpus, so tokenizing, row caches and `max_tokens` work as for
every other source. Documents are ordered by a hash of their path, so a `max_tokens` prefix draws
from every root rather than from the first one alphabetically. Files that are not UTF-8 are
counted and reported, never fatal.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sysconfig
from pathlib import Path
from typing import Sequence

import gin

from patch_training.atomic import write_json_atomic
from patch_training.data import corpora
from patch_training.data.paths import default_cache_dir
from patch_training.data.tasks import register_jsonl_corpus
from patch_training.errors import UserError

log = logging.getLogger(__name__)

# Bump when the layout of the written JSONL changes, so old mixes are not reused.
MIX_FORMAT_VERSION = 1
INFO_FILE = "code_mix.json"


def site_packages_root() -> Path:
    """Where this interpreter's installed pure-Python packages live."""
    return Path(sysconfig.get_paths()["purelib"])


def mix_roots(packages: Sequence[str], include_stdlib: bool = True) -> list[tuple[str, Path]]:
    """(label, root) pairs: `stdlib` first, then each package directory under site-packages."""
    roots = [("stdlib", corpora.default_code_root())] if include_stdlib else []
    site = site_packages_root()
    for name in packages:
        path = site / name
        if not path.is_dir():
            raise UserError(f"code mix: package {name!r} is not installed in {site} "
                            f"(install it or remove it from the mix)")
        roots.append((name, path))
    if not roots:
        raise UserError("code mix: no roots (include_stdlib=False and no packages)")
    return roots


def _order_key(label: str, relative: str) -> str:
    return hashlib.sha256(f"{label}/{relative}".encode()).hexdigest()


def build_code_mix(out_root: Path, roots: Sequence[tuple[str, Path]], *, validation_fraction: float,
                   extensions: Sequence[str] = (".py",)) -> dict:
    """Write the mix's JSONL splits under `out_root` (once per content); returns its info record."""
    listed = []  # (label, root, file, split)
    for label, root in roots:
        # Package roots are split relative to site-packages ("pandas/core/frame.py"), the stdlib
        # relative to itself, exactly as the `code_corpus` source does.
        base = root if label == "stdlib" else root.parent
        files = corpora.list_corpus_files(root, extensions)
        splits = corpora.split_files(base, files, validation_fraction)
        for split, paths in splits.items():
            listed.extend((label, base, f, split) for f in paths)
    fingerprint = corpora.fingerprint_files(Path("/"), [f for _, _, f, _ in listed], MIX_FORMAT_VERSION,
                                            validation_fraction, tuple(label for label, _ in roots))
    out = out_root / f"mix-{fingerprint}"
    info_path = out / INFO_FILE
    if info_path.is_file():
        return json.loads(info_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    report = corpora.RowReport()
    counts: dict[str, dict[str, int]] = {}
    listed.sort(key=lambda x: _order_key(x[0], str(x[2].relative_to(x[1]))))
    handles = {s: open(out / f"{s}.jsonl.tmp", "w", encoding="utf-8") for s in ("train", "validation")}
    try:
        for label, base, f, split in listed:
            for rel, text in corpora.iter_code_documents(base, [f], report):
                handles[split].write(json.dumps({"text": text, "id": f"{label}:{rel}"}) + "\n")
                per_split = counts.setdefault(split, {})
                per_split[label] = per_split.get(label, 0) + 1
    finally:
        for h in handles.values():
            h.close()
    for s in handles:
        os.replace(out / f"{s}.jsonl.tmp", out / f"{s}.jsonl")
    report.log("code mix")
    info = {"fingerprint": fingerprint, "roots": {label: str(root) for label, root in roots},
            "validation_fraction": validation_fraction, "documents": counts,
            "bytes": {s: (out / f"{s}.jsonl").stat().st_size for s in handles},
            "row_report": report.to_dict(),
            "files": {s: str(out / f"{s}.jsonl") for s in handles}}
    write_json_atomic(info_path, info)
    return info


@gin.configurable
def register_code_mix_corpus(*, name: str = "code_mix", packages: Sequence[str] = (),
                             include_stdlib: bool = True, validation_fraction: float = 0.02,
                             cache_dir: str | None = None) -> str:
    """Build (once) the stdlib + `packages` mix and register it as the JSONL corpus `name`."""
    roots = mix_roots(packages, include_stdlib)
    out_root = (Path(cache_dir) if cache_dir else default_cache_dir()) / "corpora"
    info = build_code_mix(out_root, roots, validation_fraction=validation_fraction)
    return register_jsonl_corpus(name=name, train_files=[info["files"]["train"]],
                                 validation_files=[info["files"]["validation"]])
