"""The packages lean one way (DESIGN: "Packages and which way they lean"), the library never imports
its entry points, and no import cycle runs within or across the three packages, counting imports inside
functions."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# CLI shims kept at their old `python -m` paths; they import the entry points on purpose.
CLI_SHIMS = {"patch_training.train", "patch_training.two_stage", "patch_training.aot",
             "patch_training.data.preprocess"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(path: Path) -> set[str]:
    """Every module an `import` / `from ... import` anywhere in the file names (functions included)."""
    found = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


PACKAGES = ("patch_training", "evals", "case2code_finetune")
# What case2code_finetune may use of evals (DESIGN): the sandbox, and the model interface + backends for
# model-written inputs. Anything else of evals (the eval suites, the report) is off limits.
CASE2CODE_MAY_USE = ("evals.execution", "evals.model_api", "evals.backends")


def package_graph(*packages: str) -> dict[str, set[str]]:
    files = sorted(f for package in packages for f in (REPO / package).rglob("*.py"))
    names = {module_name(f) for f in files}
    return {module_name(f): {m for m in imports_of(f) if m in names and m != module_name(f)} for f in files}


def test_packages_lean_the_documented_way():
    for package, forbidden in (("patch_training", ("evals", "case2code_finetune")), ("evals", ("case2code_finetune",))):
        for path in sorted((REPO / package).rglob("*.py")):
            bad = sorted(m for m in imports_of(path) if m.split(".")[0] in forbidden)
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"
    for path in sorted((REPO / "case2code_finetune").rglob("*.py")):
        bad = sorted(m for m in imports_of(path) if m.split(".")[0] == "evals"
                     and not any(m == ok or m.startswith(ok + ".") for ok in CASE2CODE_MAY_USE))
        assert not bad, f"{path.relative_to(REPO)} imports {bad} (case2code_finetune may use {CASE2CODE_MAY_USE})"


def test_library_does_not_import_entry_points():
    graph = package_graph("patch_training")
    for module, deps in graph.items():
        if module.startswith("patch_training.main") or module in CLI_SHIMS:
            continue
        bad = sorted(d for d in deps if d.startswith("patch_training.main") or d in CLI_SHIMS)
        assert not bad, f"library module {module} imports entry points {bad}"


def test_no_import_cycle_within_or_across_the_packages():
    graph = package_graph(*PACKAGES)
    # A package's __init__ is imported with any of its submodules; treat `a.b` -> `a` as no edge.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
