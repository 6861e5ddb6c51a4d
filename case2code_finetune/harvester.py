"""Harvest real top-level Python functions from source trees into the official raw shape.

    rows = harvest_functions(sources, counts=Counter(), decontaminator=..., max_functions=None, seed=0)

Each row has the official raw fields (`id`, `content`, `import_code`) plus provenance (`source`, `module`,
`lineno`) and what the later stages need (`func_name`, `constants`, `helpers`, `code`: the self-contained
program, `fn_hash`). `counts` receives one count per file problem and per drop reason, in funnel order.
"""
from __future__ import annotations

import ast
import hashlib
import os
import random
import sysconfig
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from case2code_finetune import function_filters as ff
from case2code_finetune.decontaminate import Decontaminator
from case2code_finetune.dedup import NearDuplicateIndex
from case2code_finetune.free_names import index_module, resolve
from patch_training.errors import UserError

SKIP_DIRS = frozenset({"__pycache__", "test", "tests", "testing", "idle_test", "_vendor", "vendor", "vendored",
                       "site-packages", "dist-packages", "node_modules", "build", "examples", "benchmarks"})
MAX_FILE_BYTES = 1 << 20


def default_sources() -> list[Path]:
    """The interpreter's standard library and the project's installed site-packages."""
    paths = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    out = []
    for p in paths:
        if p.is_dir() and p.resolve() not in [q.resolve() for q in out]:
            out.append(p)
    return out


def _is_test_file(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name in ("conftest.py", "setup.py",
                                                                             "__main__.py")


def python_files(sources: Iterable[Path], counts: Counter) -> list[tuple[Path, Path]]:
    """(root, file) pairs under each source, skipping tests, caches and vendored trees; sorted."""
    out = []
    for root in sources:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"source directory does not exist: {root}")
        for dirpath, dirnames, filenames in os.walk(root):
            kept = []
            for d in dirnames:
                if d in SKIP_DIRS or d.startswith(".") or d.endswith((".dist-info", ".egg-info")):
                    counts["skipped_dirs"] += 1
                else:
                    kept.append(d)
            dirnames[:] = sorted(kept)
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                if _is_test_file(name):
                    counts["skipped_test_files"] += 1
                    continue
                out.append((root, Path(dirpath) / name))
    return out


def render_program(import_code: list[str], constants: list[str], helpers: list[str], content: str) -> str:
    """The self-contained program a row's `code` holds: imports, constants, helpers, then the function."""
    blocks = []
    if import_code:
        blocks.append("\n".join(import_code) + "\n")
    if constants:
        blocks.append("\n".join(constants) + "\n")
    blocks += [h if h.endswith("\n") else h + "\n" for h in helpers]
    blocks.append(content)
    return "\n".join(blocks)


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _parse(raw: bytes) -> tuple[ast.Module | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "non_utf8_files"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text), None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, "unparseable_files"


def harvest_functions(sources: Iterable[Path], *, counts: Counter, decontaminator: Decontaminator | None = None,
                      max_functions: int | None = None, seed: int = 0,
                      progress=None) -> Iterator[dict]:
    """Yield kept function rows. Files are visited in a seeded shuffled order so that `max_functions`
    samples across all sources rather than the first package alphabetically."""
    files = python_files(sources, counts)
    random.Random(seed).shuffle(files)
    counts["files"] += len(files)
    seen_file_hashes: set[str] = set()
    exact: set[str] = set()
    near = NearDuplicateIndex()
    kept = 0
    for n_done, (root, path) in enumerate(files):
        if progress is not None:  # counts kept functions toward max_functions, else files
            progress.update(kept if max_functions is not None else n_done)
        try:
            raw = path.read_bytes()
        except OSError:
            counts["unreadable_files"] += 1
            continue
        if len(raw) > MAX_FILE_BYTES:
            counts["oversized_files"] += 1
            continue
        digest = hashlib.sha1(raw).hexdigest()
        if digest in seen_file_hashes:  # vendored or copied module: the same bytes twice
            counts["duplicate_files"] += 1
            continue
        seen_file_hashes.add(digest)
        tree, problem = _parse(raw)
        lines = [ln + "\n" for ln in raw.decode("utf-8", "replace").split("\n")] if tree is not None else []
        if tree is None:
            counts[problem] += 1
            continue
        counts["parsed_files"] += 1
        idx = None
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            counts["harvested"] += 1
            # Judge on the original text's size first: copying and unparsing every def is the costly part.
            reason = ff.structural_reason(node, "".join(lines[node.lineno - 1:node.end_lineno or node.lineno]))
            if reason is None:
                idx = idx or index_module(tree)
                res = resolve(node, idx)
                reason = res.reason
            if reason is not None:
                counts[f"drop_{reason}"] += 1
                continue
            counts["passed_filters"] += 1
            content = ast.unparse(ff.clean_copy(node)) + "\n"
            helpers = [ast.unparse(ff.clean_copy(h)) + "\n" for h in res.helpers]
            key = ff.normalised_dump(node) + "".join(ff.normalised_dump(h) for h in res.helpers)
            if key in exact:
                counts["drop_exact_duplicate"] += 1
                continue
            exact.add(key)
            fn_hash = hashlib.sha1(key.encode()).hexdigest()
            if near.seen_similar(fn_hash, "".join(helpers) + ast.unparse(ff.anonymised(node))):
                counts["drop_near_duplicate"] += 1
                continue
            if decontaminator is not None:
                why = decontaminator.reason(ff.strip_docstring(node), content)
                if why is not None:
                    counts[f"drop_{why}"] += 1
                    continue
            counts["decontaminated"] += 1
            code = render_program(res.imports, res.constants, helpers, content)
            yield {
                "id": f"c2c-{fn_hash[:20]}", "content": content, "import_code": res.imports,
                "func_name": node.name, "constants": res.constants, "helpers": helpers, "code": code,
                "fn_hash": fn_hash, "source": str(path.relative_to(root)), "source_root": str(root),
                "module": _module_name(root, path), "lineno": node.lineno,
                "params": [p.arg for p in ff.keyword_params(node)],
            }
            kept += 1
            if max_functions is not None and kept >= max_functions:
                counts["stopped_at_max_functions"] = 1
                break
        else:
            continue
        break
    if progress is not None:
        progress.update(kept if max_functions is not None else len(files))
