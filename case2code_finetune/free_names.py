"""Resolve a function's free names against its module: stdlib imports, small literal constants, helpers.

Stdlib imports become the row's `import_code`; module-level literal constants (small reprs) and up to
`MAX_HELPERS` helper functions that pass the same filters are bundled with it; anything else (classes,
computed globals, third-party or denied modules, unknown names) drops the function with a named reason.
"""
from __future__ import annotations

import ast
import dataclasses

from case2code_finetune import function_filters as ff

MAX_HELPERS = 2
MAX_CONSTANTS = 6
MAX_CONSTANT_REPR = 200


@dataclasses.dataclass
class ModuleIndex:
    """What a module's top level binds, as far as bundling cares."""
    imports: dict[str, tuple[str, str]]        # bound name -> (import statement, top-level module)
    constants: dict[str, str]                  # name -> "NAME = literal" source
    functions: dict[str, ast.FunctionDef]
    other: set[str]                            # bound to anything else (classes, computed values, ...)


def _import_lines(node: ast.stmt) -> list[tuple[str, str, str]]:
    out = []
    if isinstance(node, ast.Import):
        for a in node.names:
            bound = a.asname or a.name.split(".")[0]
            stmt = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
            out.append((bound, stmt, a.name.split(".")[0]))
    elif isinstance(node, ast.ImportFrom):
        mod = "." * node.level + (node.module or "")
        for a in node.names:
            if a.name == "*":
                continue
            bound = a.asname or a.name
            stmt = f"from {mod} import {a.name}" + (f" as {a.asname}" if a.asname else "")
            out.append((bound, stmt, "" if node.level else (node.module or "").split(".")[0]))
    return out


def index_module(tree: ast.Module) -> ModuleIndex:
    idx = ModuleIndex({}, {}, {}, set())
    body = list(tree.body)
    # Imports guarded by try/except or `if` at top level are still the module's imports.
    for node in list(body):
        if isinstance(node, ast.Try):
            body += node.body
        elif isinstance(node, ast.If):
            body += node.body + node.orelse
    for node in body:
        for bound, stmt, top in _import_lines(node):
            idx.imports[bound] = (stmt, top)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if isinstance(node, ast.FunctionDef):
                idx.functions[node.name] = node
            else:
                idx.other.add(node.name)
        elif isinstance(node, ast.ClassDef):
            idx.other.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            simple = len(targets) == 1 and isinstance(targets[0], ast.Name) and node.value is not None
            if simple and _small_literal(node.value):
                idx.constants[targets[0].id] = f"{targets[0].id} = {ast.unparse(node.value)}"
            else:
                for t in targets:
                    idx.other |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return idx


def _small_literal(node: ast.expr) -> bool:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return len(repr(value)) <= MAX_CONSTANT_REPR


@dataclasses.dataclass
class Resolution:
    imports: list[str]
    constants: list[str]
    helpers: list[ast.FunctionDef]
    reason: str | None = None


def _import_reason(top: str) -> str | None:
    if not top:
        return "relative_import"
    if top in ff.DENIED_MODULES:
        return "denied_import"
    if top not in ff.STDLIB_MODULES:
        return "non_stdlib_import"
    return None


def resolve(fn: ast.FunctionDef, idx: ModuleIndex) -> Resolution:
    """Bundle what `fn` needs, or say why it cannot be bundled."""
    res = Resolution([], [], [])
    pending, seen = [fn], {fn.name}
    while pending:
        f = pending.pop(0)
        for top in ff.inner_imports(f):
            reason = _import_reason(top)
            if reason:
                return dataclasses.replace(res, reason=reason)
        for name in sorted(ff.free_names(f)):
            if name in seen:
                continue
            if name in idx.imports:
                stmt, top = idx.imports[name]
                reason = _import_reason(top)
                if reason:
                    return dataclasses.replace(res, reason=reason)
                if stmt not in res.imports:
                    res.imports.append(stmt)
            elif name in idx.constants:
                if idx.constants[name] not in res.constants:
                    res.constants.append(idx.constants[name])
                if len(res.constants) > MAX_CONSTANTS:
                    return dataclasses.replace(res, reason="too_many_constants")
            elif name in idx.functions:
                helper = idx.functions[name]
                src = ast.unparse(helper)
                if ff.structural_reason(helper, src) is not None:
                    return dataclasses.replace(res, reason="helper_fails_filters")
                if len(res.helpers) >= MAX_HELPERS:
                    return dataclasses.replace(res, reason="too_many_helpers")
                res.helpers.append(helper)
                seen.add(name)
                pending.append(helper)
            elif name in idx.other:
                return dataclasses.replace(res, reason="unbundlable_global")
            elif name in ff.BUILTIN_NAMES:
                continue
            else:
                return dataclasses.replace(res, reason="unresolved_name")
    return res
