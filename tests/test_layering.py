"""The package's layers: what the models stand on imports nothing of what trains, searches, deploys or runs them.

Every module under ``src/mobilenets`` is parsed (not imported) and each import resolved to the absolute
module it names, relative or absolute, at module level or inside a function.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mobilenets"

# The lower layers (paths relative to src/mobilenets) and the upper packages they must not import.
LOWER = ("models/", "ops/", "layers.py", "data/")
UPPER = ("tasks", "training", "search", "deploy", "commands")

# Known exceptions: (importing module, imported module). Each one is a debt, named with its reason.
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute names of every module ``path`` imports (``from a import b`` gives ``a`` and ``a.b``), with lines."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
    return found


def upper_package(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] != "mobilenets" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in UPPER else None


def violations(path: Path) -> list[str]:
    name = module_name(path)
    bad = []
    for target, line in imports(path):
        upper = upper_package(target)
        if upper and (name, f"mobilenets.{upper}") not in KNOWN:
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    return bad


def lower_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix().startswith(LOWER))


def test_the_lower_layers_exist():
    found = {p.relative_to(PACKAGE).as_posix().split("/")[0] for p in lower_modules()}
    assert found == {"models", "ops", "layers.py", "data"}


@pytest.mark.parametrize("path", lower_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_lower_layers_import_no_upper_package(path):
    assert violations(path) == []


def test_every_module_parses():
    for path in PACKAGE.rglob("*.py"):
        imports(path)


@pytest.mark.parametrize(
    "source",
    [
        "from ..tasks.detection.loss import ssd_loss",
        "from .. import training",
        "import mobilenets.search.plan",
        "from mobilenets.deploy import exporter",
        "def f():\n    from ..commands.train import main\n",
        "class C:\n    def m(self):\n        import mobilenets.tasks as t\n",
    ],
)
def test_a_bad_import_is_caught(tmp_path, monkeypatch, source):
    """The check itself: each way of writing an upward import, in a module placed at models/, is reported."""
    package = tmp_path / "mobilenets"
    (package / "models").mkdir(parents=True)
    path = package / "models" / "bad.py"
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert violations(path), source


def test_allowed_imports_pass(tmp_path, monkeypatch):
    package = tmp_path / "mobilenets"
    (package / "models").mkdir(parents=True)
    path = package / "models" / "good.py"
    path.write_text(
        "from ..ops.coder import decode\nfrom ..layers import ConvNormAct\nimport torch\n"
        "from . import net\nfrom ..registry import register\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert violations(path) == []
