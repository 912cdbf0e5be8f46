"""Imports run one way: no module of mobilenets imports (at module level or inside a function) one that imports it.

The layering this keeps: ``pretrained`` (NAME.TAG -> shipped directory) and ``registry`` at the bottom;
``models.build`` (options -> module) below ``io`` (model directories: save, load); ``io`` below
``models.factory`` (``create_model``: registered names and shipped weights); ``models.width``
(narrowing) below ``search`` and ``tasks``. A lazy import inside a function counts: one that exists
only to dodge a circle is still a circle.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mobilenets"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package __init__)} for every .py file under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the package's modules it imports anywhere in its source}: ``from a import b`` is an edge
    to the module ``a.b`` when that is one, else to ``a``. A submodule's implicit import of its parent
    package is not an edge (a package's ``__init__`` importing its children is not a circle)."""
    modules = _modules(root)
    top = root.name
    graph = {}
    for name, (path, package) in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                           for alias in node.names]  # fmt: skip
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import mobilenets.io.x` style: the deepest module
                    target = target.rpartition(".")[0]
                if target.split(".")[0] == top and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "mobilenets.models.build" in graph["mobilenets.io"]  # module level, relative
    assert "mobilenets.io" in graph["mobilenets.commands.models"]  # inside a function
    assert "mobilenets.models.width" in graph["mobilenets.tasks.dense"]  # inside a function, two dots


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("mobilenets.pretrained", "mobilenets.io"),
        ("mobilenets.registry", "mobilenets.models.factory"),
        ("mobilenets.models.build", "mobilenets.io"),
        ("mobilenets.io", "mobilenets.models.factory"),
        ("mobilenets.models.width", "mobilenets.search.plan"),
        ("mobilenets.models.width", "mobilenets.tasks.dense"),
    ],
)
def test_lower_modules_do_not_import_higher_ones(lower, higher):
    graph = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
        return False

    assert not reaches(lower, higher), f"{lower} imports {higher} (directly or through others)"


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_docs_layout_is_generated_from_the_code():
    """docs/layout.md is what docs/make_layout.py writes now: regenerate it after adding or moving a module."""
    import importlib.util

    script = PACKAGE.parent.parent / "docs" / "make_layout.py"
    spec = importlib.util.spec_from_file_location("make_layout", script)
    make_layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_layout)
    text = make_layout.render()
    assert (script.parent / "layout.md").read_text() == text, "stale: run `python docs/make_layout.py`"
    order = make_layout.layer_order(import_graph())
    position = {name: i for i, name in enumerate(order)}
    for name, edges in import_graph().items():  # each module is listed below everything it imports
        assert all(position[edge] < position[name] for edge in edges), name
