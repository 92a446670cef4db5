"""The public surface: ``flowbus.__all__`` is honest, and layers point one way."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import flowbus

PACKAGE = Path(flowbus.__file__).parent


def test_every_name_in_all_exists() -> None:
    missing = [name for name in flowbus.__all__ if not hasattr(flowbus, name)]

    assert missing == []
    assert len(set(flowbus.__all__)) == len(flowbus.__all__)


def test_every_public_name_defined_in_init_is_listed_in_all() -> None:
    # Names bound by flowbus/__init__.py itself (its imports and definitions); submodules
    # appear as attributes once imported and are not part of the list
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            bound.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {name for name in bound if not name.startswith("_")}

    assert public == set(flowbus.__all__)
    attributes = {
        name
        for name, value in vars(flowbus).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert attributes == set(flowbus.__all__)


def imported_modules(path: Path) -> set[str]:
    """Top-level package names ``path`` imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_flowbus_module_imports_the_worker() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "worker" in imported_modules(path)
    ]

    assert offenders == []


def test_the_import_scan_sees_worker_imports() -> None:
    # Guards the test above against a scanner that finds nothing
    assert "worker" in imported_modules_of("import worker.app\n")
    assert "worker" in imported_modules_of("def f():\n    from worker import app\n")
    assert "flowbus" in imported_modules(PACKAGE / "client.py")


def imported_modules_of(source: str) -> set[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.py"
        path.write_text(source)
        return imported_modules(path)
