"""The wiring rules of docs/architecture.md, checked over the source tree with ``ast``:

- no module under services/<a>/ imports services/<b>/main (entry points are not libraries; what two
  services share lives in shared/, adapters are built by shared/bootstrap.py);
- the import graph among the project's modules has no cycle;
- no project module is imported inside a function of services/ or shared/ (the usual way to dodge a
  cycle; the tools in ops/, bench/ and devstack/ import optional extras late, on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "ops", "devstack", "eval", "bench", "demo", "scripts")
RUNTIME_PACKAGES = ("shared", "services")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(), str(path))
            for package in PACKAGES if (PROJECT_ROOT / package).is_dir()
            for path in sorted((PROJECT_ROOT / package).rglob("*.py"))}


MODULES = project_modules()


def resolve(name: str) -> str | None:
    """The project module an imported name refers to (``a.b.c`` may be module a.b's attribute c)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{alias.name}" for alias in node.names] or [base]
    return [target for target in map(resolve, names) if target is not None]


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (also those under if/try at the top level)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
    return found


def function_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [inner for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(function) if isinstance(inner, (ast.Import, ast.ImportFrom))]


def import_graph() -> dict[str, set[str]]:
    """Who imports whom, at module level or inside a function (a cycle hidden in a function is one too)."""
    graph = {name: set() for name in MODULES}
    for name, tree in MODULES.items():
        for node in module_level_imports(tree) + function_level_imports(tree):
            graph[name].update(target for target in imported(node) if target != name)
    for name in list(graph):  # importing a.b.c runs a/__init__ and a/b/__init__ first (unless already running)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target in list(graph[name]):
            parts = target.split(".")
            graph[name].update(p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
                               if p in MODULES and p not in own)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 2 else None


def test_the_rules_see_the_tree():
    """Guards the test itself: it parsed the services and found their imports."""
    assert {"services.query.main", "services.indexer.core", "shared.kafka"} <= set(MODULES)
    assert "shared.kafka" in import_graph()["services.classifier.main"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_service_imports_another_services_entry_point():
    offending = sorted({f"{name} imports {target}" for name, tree in MODULES.items()
                       for node in module_level_imports(tree) + function_level_imports(tree)
                       for target in imported(node)
                       if service_of(name) and target.endswith(".main") and service_of(target)
                       and service_of(target) != service_of(name)})
    assert not offending, "entry points are not libraries (move what is shared to shared/):\n" + "\n".join(offending)


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_project_module_is_imported_inside_a_function():
    offending = sorted(f"{name}:{node.lineno} imports {', '.join(imported(node))}" for name, tree in MODULES.items()
                       if name.split(".")[0] in RUNTIME_PACKAGES
                       for node in function_level_imports(tree) if imported(node))
    assert not offending, "import at module level (a cycle is fixed by moving code, not by hiding it):\n" + \
        "\n".join(offending)
