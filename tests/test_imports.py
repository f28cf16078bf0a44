"""The package's shape, read from its source with `ast` (issue 34): no import circles between its modules,
function-local imports included; no library module importing a command, the CLI or doctor; no module over
MAX_LINES lines.

An import under `if TYPE_CHECKING:` is not an edge: it names a type for annotations and never runs.
Neither is a module named in a string (the engine adapter registry, `importlib.import_module`): the adapters
import the engine base, not the other way round.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "batchscore"
#: modules that only the command line imports: the entry points, one module per subcommand, and the checks
#: that only `batchscore doctor` runs
FRONT = ("batchscore.__main__", "batchscore.cli", "batchscore.commands", "batchscore.doctor")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth (functions, methods, try blocks), except under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module `name` (at `path`) imports, each resolved to the module that holds it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
        # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
        targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    edges = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle through each group of modules that import each other (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_shortest_circle(graph, group) for group in groups]


def _shortest_circle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & group):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w not in came:
                came[w] = v
                queue.append(w)
    raise AssertionError(f"{group} is no circle")


def is_front(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FRONT)


def test_the_graph_sees_every_kind_of_import() -> None:
    """Function-local, relative, `from . import module` and parent-relative imports are all edges."""
    graph = import_graph()
    assert "batchscore.runner" in graph["batchscore.commands.score"]  # function-local, `from ..runner import`
    assert "batchscore.commands.jobargs" in graph["batchscore.commands.score"]  # relative, module level
    assert "batchscore.engines" in graph["batchscore.engines.onnxrt"]  # `from . import Engine` in a package
    assert "batchscore.commands.score" in graph["batchscore.cli"]  # `from .commands import score`
    assert "batchscore.config" in graph["batchscore.engines.torch_backend"]  # `from ..config import`


def test_circles_are_found_and_reported_shortest() -> None:
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "a"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def _assert_no_circles(graph: dict[str, set[str]]) -> None:
    found = circles(graph)
    assert not found, "import circles (function-local imports count):\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_import_circles() -> None:
    _assert_no_circles(import_graph())


def _front_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(name, target) for name, targets in graph.items() if not is_front(name)
            for target in targets if is_front(target)}


def test_library_modules_never_import_a_command_or_the_cli() -> None:
    wrong = _front_imports(import_graph())
    assert not wrong, "\n".join(f"{name} imports {target}" for name, target in sorted(wrong))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines; split it by concern (at most {MAX_LINES})"
