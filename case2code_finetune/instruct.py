"""A second instruction source built from harvested code: docstring -> function, function -> docstring.

No public instruction set is reachable here, so the mixed instruction fine-tuning variant pairs
Case2Code with instructions derived from documented Python functions of the same default source
(the standard library and site-packages). Functions are found with `ast` only, never imported or
run. Each kept function yields two rows:

- `doc2func`: the docstring and signature in the prompt, the whole function (fenced) as the answer;
- `func2doc`: the function without its docstring in the prompt, the docstring as the answer.

Splits are by a hash of the function source (a function and both its rows stay in one split), so
the output is the same on every machine with the same files. Output: `OUT/{train,validation,
test}.jsonl` with `id`, `kind`, `prompt`, `output`, `source`, plus `manifest.json`; a rerun with
the same options is skipped.

CLI: `python -m case2code_finetune.instruct --out DIR [--root DIR ...] [--max_functions N]`.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from patch_training.errors import UserError, run_cli

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

DOC2FUNC_TEMPLATES = (
    "Write a Python function `{name}{signature}` that does the following.\n\n{doc}\n",
    "Implement `{name}` in Python.\n\nSignature: def {name}{signature}\nDescription:\n{doc}\n",
    "{doc}\n\nWrite this as a Python function named `{name}` with the signature `{signature}`.\n",
)
FUNC2DOC_TEMPLATES = (
    "Write a docstring for the following Python function.\n\n```python\n{code}\n```\n",
    "What does this function do? Answer with a docstring.\n\n```python\n{code}\n```\n",
    "```python\n{code}\n```\n\nDescribe `{name}` in a docstring.\n",
)


def default_roots() -> list[Path]:
    """The standard library and the interpreter's site-packages (the harvesting default)."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"]), Path(paths["purelib"])]
    return [r for i, r in enumerate(roots) if r.is_dir() and r not in roots[:i]]


def _python_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Tests and vendored copies add near-duplicates, not instructions.
        dirnames[:] = sorted(d for d in dirnames if d not in {"test", "tests", "__pycache__", "_vendor", "idlelib"}
                             and not d.endswith((".dist-info", ".egg-info")))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def _signature(fn: ast.FunctionDef) -> str:
    return f"({ast.unparse(fn.args)})" + (f" -> {ast.unparse(fn.returns)}" if fn.returns else "")


def documented_functions(path: Path, *, min_doc_words: int = 4, max_lines: int = 40,
                         max_chars: int = 2000) -> Iterator[dict]:
    """Top-level, undecorated, documented functions of one file, with and without their docstring."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return
    lines = text.splitlines()
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or fn.decorator_list or fn.name.startswith("_"):
            continue
        doc = ast.get_docstring(fn, clean=True)
        if not doc or len(doc.split()) < min_doc_words or len(fn.body) < 2:
            continue
        source_lines = lines[fn.lineno - 1:fn.end_lineno]
        if len(source_lines) > max_lines:
            continue
        code = "\n".join(source_lines)
        if len(code) > max_chars:
            continue
        doc_node = fn.body[0]
        without = lines[fn.lineno - 1:doc_node.lineno - 1] + lines[doc_node.end_lineno:fn.end_lineno]
        yield {"name": fn.name, "signature": _signature(fn), "doc": doc, "code": code,
               "code_without_doc": "\n".join(without)}


def _bucket(code: str) -> float:
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_of(code: str, validation_fraction: float, test_fraction: float) -> str:
    b = _bucket(code)
    if b < test_fraction:
        return "test"
    return "validation" if b < test_fraction + validation_fraction else "train"


def instruction_rows(fn: dict, where: str, rng: random.Random) -> list[dict]:
    fields = {"name": fn["name"], "signature": fn["signature"], "doc": fn["doc"]}
    doc2func = {"id": f"doc2func:{where}:{fn['name']}", "kind": "doc2func", "source": where,
                "prompt": rng.choice(DOC2FUNC_TEMPLATES).format(**fields),
                "output": f"```python\n{fn['code']}\n```"}
    func2doc = {"id": f"func2doc:{where}:{fn['name']}", "kind": "func2doc", "source": where,
                "prompt": rng.choice(FUNC2DOC_TEMPLATES).format(code=fn["code_without_doc"], name=fn["name"]),
                "output": fn["doc"]}
    return [doc2func, func2doc]


def build_instruction_set(out: str | os.PathLike, *, roots: Sequence[str | os.PathLike] | None = None,
                          max_functions: int | None = None, validation_fraction: float = 0.02,
                          test_fraction: float = 0.02, seed: int = 0) -> dict:
    """Write the instruction set into `out` (atomically); returns the manifest. Skips a finished identical build."""
    root_paths = [Path(r) for r in roots] if roots else default_roots()
    for r in root_paths:
        if not r.is_dir():
            raise UserError(f"source root not found: {r}")
    if max_functions is not None and max_functions <= 0:
        raise UserError(f"--max_functions must be positive, got {max_functions}")
    options = {"format": FORMAT_VERSION, "roots": [str(r) for r in root_paths], "max_functions": max_functions,
               "validation_fraction": validation_fraction, "test_fraction": test_fraction, "seed": seed}
    out = Path(out)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("options") == options:
            print(f"[instruct] {out} already built ({manifest['functions']} functions); skipping", file=sys.stderr)
            return manifest
        raise UserError(f"{out} holds an instruction set built with other options; use another --out")
    rng = random.Random(seed)
    seen: set[str] = set()
    counts = {"train": 0, "validation": 0, "test": 0}
    files = duplicates = 0
    t0 = last = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        handles = {s: open(tmp / f"{s}.jsonl", "w", encoding="utf-8") for s in counts}
        try:
            done = False
            for root in root_paths:
                for path in _python_files(root):
                    files += 1
                    where = f"{root.name}/{path.relative_to(root)}"
                    for fn in documented_functions(path):
                        key = hashlib.sha256(fn["code"].encode()).hexdigest()
                        if key in seen:
                            duplicates += 1
                            continue
                        seen.add(key)
                        split = split_of(fn["code"], validation_fraction, test_fraction)
                        for row in instruction_rows(fn, where, rng):
                            handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
                        counts[split] += 1
                        if max_functions is not None and len(seen) >= max_functions:
                            done = True
                            break
                    if time.time() - last > 5:
                        last = time.time()
                        print(f"[instruct] {files} files, {len(seen)} functions, "
                              f"{files / (last - t0):.0f} files/s", file=sys.stderr, flush=True)
                    if done:
                        break
                if done:
                    break
        finally:
            for h in handles.values():
                h.close()
        if not seen:
            raise UserError(f"no documented top-level functions found under {', '.join(map(str, root_paths))}")
        manifest = {"options": options, "functions": len(seen), "functions_per_split": counts,
                    "rows_per_split": {s: 2 * n for s, n in counts.items()}, "files_scanned": files,
                    "duplicates_skipped": duplicates, "seconds": round(time.time() - t0, 1)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[instruct] {len(seen)} functions from {files} files -> {out} "
          f"(train/validation/test functions {counts['train']}/{counts['validation']}/{counts['test']})",
          file=sys.stderr, flush=True)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m case2code_finetune.instruct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (train/validation/test.jsonl)")
    parser.add_argument("--root", action="append", default=None,
                        help="source directory to harvest (repeatable; default: stdlib + site-packages)")
    parser.add_argument("--max_functions", type=int, default=None)
    parser.add_argument("--validation_fraction", type=float, default=0.02)
    parser.add_argument("--test_fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_instruction_set(args.out, roots=args.root, max_functions=args.max_functions,
                          validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
                          seed=args.seed)
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m case2code_finetune.instruct")
