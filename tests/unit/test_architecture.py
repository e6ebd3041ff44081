"""The import graph of `specframe/`: no cycles, and the library never imports the CLI.

Edges are read with `ast` from every `import`/`from ... import` statement in a module, at module level AND inside
functions (a lazy import that dodges a cycle at import time is still a cycle in the design: neither side can be
changed or tested alone). Imports under `if TYPE_CHECKING:` are not counted, because they never run. An edge goes to
the module named; `from package import name` goes to `package/name.py` when that is a module, else to the package's
`__init__.py`. Implicit parent-package imports are not edges (every `__init__.py` here is import-free or only
imports its own children).

Print the graph's cycles (strongly connected components) without pytest:

    python3 tests/unit/test_architecture.py
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "specframe"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import node, skipping the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: {specframe modules it imports}} over every .py file below `package`."""
    files = {module_name(p): p for p in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:  # `import specframe.x.y as z` -> nearest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out, key=lambda c: (-len(c), c))


def describe(graph: dict[str, set[str]], comp: list[str]) -> str:
    members = set(comp)
    edges = [f"  {a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
    return f"cycle of {len(comp)} modules:\n" + "\n".join(edges)


def test_the_graph_is_read():
    # the reader must see real edges, or "no cycles" would be vacuous
    graph = import_graph()
    assert "specframe.module" in graph
    assert "specframe.registry" in graph["specframe.drafters.registry"]
    assert "specframe.config" in graph["specframe.module"]  # a function-level import counts too:
    assert "specframe.training" in graph["specframe.cli.train"]  # cmd_train imports it inside the function
    assert sum(len(v) for v in graph.values()) > 50


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_specframe():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles in specframe/:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_library_never_imports_the_cli():
    graph = import_graph()
    entry_points = {"specframe.__main__"}  # `python -m specframe` is the CLI's other door, not library code
    offenders = sorted(f"{a} -> {b}" for a, deps in graph.items()
                       if not a.startswith("specframe.cli") and a not in entry_points
                       for b in deps if b == "specframe.cli" or b.startswith("specframe.cli."))
    assert not offenders, "the library imports the CLI:\n" + "\n".join(offenders)


if __name__ == "__main__":
    g = import_graph()
    found = cycles(g)
    for c in found:
        print(describe(g, c))
    print(f"{len(g)} modules, {sum(len(v) for v in g.values())} import edges, {len(found)} cycle(s) "
          f"covering {sum(len(c) for c in found)} modules")
