"""The packages lean one way (DESIGN: "Packages and which way they lean"), the library never imports
its entry points, and no import cycle runs within or across the three packages, counting imports inside
functions.

The checks are pure functions of an import graph, so each rule is also run on a small made-up graph that
breaks it: a rule that could never fire would otherwise pass here forever."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("patch_training", "evals", "case2code_finetune")
# Our own top-level names: an import of any of them is first-party and must follow MAY_IMPORT.
FIRST_PARTY = (*PACKAGES, "benchmarks", "tests")
# DESIGN's table, besides the package itself (a name allows its submodules). patch_training: third-party
# only. case2code_finetune: the sandbox, and the model interface + backends for model-written inputs; the
# eval suites and the report are off limits.
MAY_IMPORT = {
    "patch_training": (),
    "evals": ("patch_training",),
    "case2code_finetune": ("patch_training", "evals.execution", "evals.model_api", "evals.backends"),
}
# CLI shims kept at their old `python -m` paths; they import the entry points on purpose.
CLI_SHIMS = {"patch_training.train", "patch_training.two_stage", "patch_training.aot",
             "patch_training.data.preprocess"}


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
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


def imports_of(path: Path, root: Path = REPO) -> set[str]:
    """Every module an `import` / `from ... import` anywhere in the file names (functions included)."""
    found = set()
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def scan(*packages: str, root: Path = REPO) -> dict[str, set[str]]:
    """module -> every name it imports, for every .py file of the packages."""
    files = sorted(f for package in packages for f in (root / package).rglob("*.py"))
    return {module_name(f, root): imports_of(f, root) for f in files}


def direction_violations(imports: dict[str, set[str]]) -> list[str]:
    """One 'module imports name' line per first-party import that DESIGN's table does not allow."""
    bad = []
    for module, names in sorted(imports.items()):
        package = module.split(".")[0]
        allowed = (package, *MAY_IMPORT[package])
        bad += [f"{module} imports {n} (may use {allowed})" for n in sorted(names)
                if n.split(".")[0] in FIRST_PARTY and not _within(n, allowed)]
    return bad


def entry_point_violations(imports: dict[str, set[str]]) -> list[str]:
    """Library modules of patch_training that import its entry points (`patch_training.main`, shims)."""
    def entry(name: str) -> bool:
        return _within(name, ("patch_training.main",)) or name in CLI_SHIMS
    return [f"library module {module} imports entry point {n}" for module, names in sorted(imports.items())
            if not entry(module) for n in sorted(names) if entry(n)]


def internal_graph(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between the scanned modules only. A package's __init__ is imported with any of its
    submodules anyway, so `a.b -> a` is no edge."""
    return {m: {d for d in names if d in imports and d != m and not m.startswith(d + ".")}
            for m, names in imports.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# --- the real tree -------------------------------------------------------------------------------------

def test_the_scan_sees_every_package():
    imports = scan(*PACKAGES)
    for package in PACKAGES:   # a renamed or empty folder would make every rule below pass vacuously
        assert sum(m.split(".")[0] == package for m in imports) >= 5, package
    assert set(MAY_IMPORT) == set(PACKAGES)


def test_packages_lean_the_documented_way():
    bad = direction_violations(scan(*PACKAGES))
    assert not bad, "\n".join(bad)


def test_library_does_not_import_entry_points():
    bad = entry_point_violations(scan("patch_training"))
    assert not bad, "\n".join(bad)


def test_no_import_cycle_within_or_across_the_packages():
    cycle = find_cycle(internal_graph(scan(*PACKAGES)))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- each rule on a graph that breaks it ---------------------------------------------------------------

def test_each_direction_rule_fires_on_a_made_up_graph():
    assert direction_violations({"patch_training.trainer": {"evals.decoding"}})
    assert direction_violations({"patch_training.trainer": {"case2code_finetune.prompts"}})
    assert direction_violations({"patch_training.trainer": {"tests.support.checkpoints"}})
    assert direction_violations({"evals.backends": {"case2code_finetune.prompts"}})
    assert direction_violations({"evals.report": {"benchmarks.decode_throughput"}})
    # case2code_finetune may use the sandbox and the model interface, not an eval suite or evals' __init__
    assert direction_violations({"case2code_finetune.inputs": {"evals.case2code.score"}})
    assert direction_violations({"case2code_finetune.inputs": {"evals"}})
    assert direction_violations({"case2code_finetune.inputs": {"evals.model_apis"}})   # a prefix, not a word
    assert not direction_violations({
        "patch_training.trainer": {"jax", "patch_training.model"},
        "evals.backends": {"patch_training.params_io", "evals.decoding", "numpy"},
        "case2code_finetune.inputs": {"patch_training.data", "evals.execution.pool", "evals.model_api",
                                      "evals.backends", "case2code_finetune.prompts"},
    })


def test_the_entry_point_rule_fires_on_a_made_up_graph():
    assert entry_point_violations({"patch_training.trainer": {"patch_training.main.train"}})
    assert entry_point_violations({"patch_training.trainer": {"patch_training.two_stage"}})
    assert not entry_point_violations({"patch_training.main.train": {"patch_training.trainer"},
                                       "patch_training.two_stage": {"patch_training.main.two_stage"}})


def test_the_cycle_rule_fires_on_a_made_up_graph():
    imports = {"evals.a": {"patch_training.b"}, "patch_training.b": {"patch_training.c", "numpy"},
               "patch_training.c": {"evals.a"}, "evals.d": {"evals.a"}}
    assert find_cycle(internal_graph(imports)) == ["evals.a", "patch_training.b", "patch_training.c", "evals.a"]
    imports["patch_training.c"] = set()
    assert find_cycle(internal_graph(imports)) is None
    # a submodule importing its own package's __init__ is no cycle
    assert find_cycle(internal_graph({"evals": {"evals.a"}, "evals.a": {"evals"}})) is None


def test_imports_inside_functions_and_relative_imports_count_but_type_checking_ones_do_not(tmp_path):
    package = tmp_path / "case2code_finetune" / "sub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..top import thing\n"
        "if TYPE_CHECKING:\n"
        "    import evals.report\n"
        "def later():\n"
        "    import evals.case2code.score as s\n")
    found = imports_of(package / "mod.py", root=tmp_path)
    assert {"case2code_finetune.sub.sibling", "case2code_finetune.top.thing", "evals.case2code.score"} <= found
    assert "evals.report" not in found
    assert direction_violations(scan("case2code_finetune", root=tmp_path)) == [
        "case2code_finetune.sub.mod imports evals.case2code.score (may use "
        f"{('case2code_finetune', *MAY_IMPORT['case2code_finetune'])})"]
