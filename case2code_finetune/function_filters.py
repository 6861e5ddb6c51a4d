"""Which harvested functions can become Case2Code examples: structural filters with one reason per drop.

A function is kept when it is a plain top-level `def` that takes arguments, returns a value, has no nested
scopes, no `global`/`nonlocal`, no decorators, stays within length bounds, and touches nothing on the I/O,
process, clock or randomness denylist. Each check returns the first reason it fails, so the funnel can count
every reason separately.
"""
from __future__ import annotations

import ast
import builtins
import sys

MIN_LINES, MAX_LINES = 3, 60
MAX_CHARS = 3000

# Modules whose use makes a function impure or dangerous to run in bulk (I/O, processes, clocks, randomness).
DENIED_MODULES = frozenset({
    "os", "sys", "subprocess", "socket", "shutil", "threading", "ctypes", "time", "random", "uuid", "secrets",
    "multiprocessing", "asyncio", "signal", "tempfile", "glob", "pathlib", "io", "urllib", "http", "ssl",
    "select", "selectors", "mmap", "fcntl", "pty", "tty", "termios", "resource", "gc", "inspect", "importlib",
    "builtins", "atexit", "faulthandler", "tracemalloc", "webbrowser", "sqlite3", "pickle", "shelve", "marshal",
    "logging", "warnings", "concurrent", "ftplib", "smtplib", "telnetlib", "zipfile", "tarfile", "gzip", "bz2",
    "lzma", "fileinput", "getpass", "platform", "sysconfig", "site", "pdb", "code", "codeop", "readline",
    "curses", "tkinter", "turtle", "wave", "sched", "queue", "weakref", "locale",
})
# Builtins that read the outside world, depend on the address space, or execute text.
DENIED_BUILTINS = frozenset({
    "open", "input", "id", "hash", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
    "breakpoint", "exit", "quit", "memoryview", "help", "dir", "setattr", "delattr", "object",
})
# Attribute calls that read a clock whatever the receiver is called (`datetime.now()`, `date.today()`).
CLOCK_ATTRS = frozenset({"now", "today", "utcnow", "time", "perf_counter", "monotonic", "process_time"})
BUILTIN_NAMES = frozenset(dir(builtins))
STDLIB_MODULES = frozenset(sys.stdlib_module_names)


def _params(fn: ast.FunctionDef) -> list[ast.arg]:
    a = fn.args
    out = list(a.posonlyargs) + list(a.args) + list(a.kwonlyargs)
    if a.vararg:
        out.append(a.vararg)
    if a.kwarg:
        out.append(a.kwarg)
    return out


def param_names(fn: ast.FunctionDef) -> list[str]:
    return [p.arg for p in _params(fn)]


def keyword_params(fn: ast.FunctionDef) -> list[ast.arg]:
    """Parameters a `dict(...)` of keyword arguments can fill (not positional-only, not * or **)."""
    return list(fn.args.args) + list(fn.args.kwonlyargs)


def _walk_body(fn: ast.FunctionDef):
    for stmt in fn.body:
        yield from ast.walk(stmt)


def _returns_value(fn: ast.FunctionDef) -> bool:
    for node in _walk_body(fn):
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
    return False


def _has_docstring(fn: ast.FunctionDef) -> bool:
    return bool(fn.body) and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) \
        and isinstance(fn.body[0].value.value, str)


def structural_reason(fn: ast.AST, source: str) -> str | None:
    """The first structural reason to drop `fn` (a top-level statement), or None when it passes."""
    if isinstance(fn, ast.AsyncFunctionDef):
        return "async"
    if not isinstance(fn, ast.FunctionDef):
        return "not_function"
    if fn.decorator_list:
        return "decorated"
    if not _params(fn):
        return "no_arguments"
    if fn.args.posonlyargs:
        return "positional_only"  # a kwargs dict cannot fill them
    if not keyword_params(fn):
        return "no_keyword_arguments"
    n_lines = (fn.end_lineno or fn.lineno) - fn.lineno + 1
    if n_lines < MIN_LINES - 1 or n_lines > MAX_LINES or len(source) > MAX_CHARS:
        return "length"
    has_print = False
    for node in _walk_body(fn):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return "generator"
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return "async"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return "nested_scope"
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return "global_nonlocal"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            has_print = True
    if not _returns_value(fn):
        return "print_only" if has_print else "no_return_value"
    return denylist_reason(fn)


def denylist_reason(fn: ast.FunctionDef) -> str | None:
    """`denied_call` for I/O / identity / exec builtins and clock reads, None otherwise (denied *modules* are
    judged when free names are resolved, where we know what a name refers to)."""
    params = set(param_names(fn))
    for node in _walk_body(fn):
        if isinstance(node, ast.Name) and node.id in DENIED_BUILTINS and node.id not in params:
            return "denied_call"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_ATTRS:
            return "denied_call"
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in (
                "__name__", "__class__", "__len__"):
            return "denied_call"  # dunder poking (`__globals__`, `__subclasses__`, ...) is never plain logic
    return None


def local_names(fn: ast.FunctionDef) -> set[str]:
    """Names bound inside the function: parameters, assignment / loop / with / except targets, imports,
    comprehension variables (conservatively merged: a comprehension variable never shadows a global use
    outside it in real code we keep, and a false 'local' only makes us stricter elsewhere)."""
    names = set(param_names(fn))
    for node in _walk_body(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.MatchAs) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def free_names(fn: ast.FunctionDef) -> set[str]:
    """Names the function reads from its module or builtins (not bound anywhere inside it)."""
    bound = local_names(fn)
    used = {n.id for n in _walk_body(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    # Default values and annotations are evaluated at def time, in the module namespace.
    for node in list(fn.args.defaults) + [d for d in fn.args.kw_defaults if d is not None]:
        used |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return used - bound


def inner_imports(fn: ast.FunctionDef) -> list[str]:
    """Top-level module names imported inside the function body."""
    out = []
    for node in _walk_body(fn):
        if isinstance(node, ast.Import):
            out += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("" if node.level else (node.module or "").split(".")[0])
    return out


def strip_docstring(fn: ast.FunctionDef) -> ast.FunctionDef:
    """A copy of `fn` without its docstring (for normalised comparisons)."""
    import copy
    fn = copy.deepcopy(fn)
    if _has_docstring(fn):
        fn.body = fn.body[1:] or [ast.Pass()]
    return fn


def _builtin_only(node: ast.expr) -> bool:
    return all(n.id in BUILTIN_NAMES for n in ast.walk(node) if isinstance(n, ast.Name)) and not any(
        isinstance(n, ast.Attribute) for n in ast.walk(node))


def clean_copy(fn: ast.FunctionDef) -> ast.FunctionDef:
    """The function as we publish it: no docstring, and only annotations made of builtins (`int`,
    `list[str]`). Others (`jax.Array`, `'Node'`) name things the bundle does not carry and would fail when
    the `def` runs."""
    fn = strip_docstring(fn)
    a = fn.args
    for p in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x is not None]:
        if p.annotation is not None and (not _builtin_only(p.annotation) or isinstance(p.annotation, ast.Constant)):
            p.annotation = None
    if fn.returns is not None and (not _builtin_only(fn.returns) or isinstance(fn.returns, ast.Constant)):
        fn.returns = None
    return fn


def anonymised(fn: ast.FunctionDef) -> ast.FunctionDef:
    """A clean copy whose own name (and recursive calls) reads `_f`: renamed copies compare equal."""
    fn = clean_copy(fn)
    name = fn.name
    fn.name = "_f"
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id == name:
            node.id = "_f"
    return fn


def normalised_dump(fn: ast.FunctionDef) -> str:
    """AST text without docstring, positions or the function's own name: equal for copies that differ only
    in layout, comments, docstring or name (recursive calls are renamed too)."""
    return ast.dump(anonymised(fn), annotate_fields=False, include_attributes=False)
