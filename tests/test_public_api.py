"""The public surface: ``flowbus.__all__`` is honest, and layers point one way."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import flowbus_worker

import flowbus

PACKAGE = Path(flowbus.__file__).parent
WORKER = Path(flowbus_worker.__file__).parent


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
    """Absolute module names ``path`` imports at run time (``TYPE_CHECKING`` blocks excepted)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in TYPE_CHECKING_TESTS:
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return names


TYPE_CHECKING_TESTS = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}

#: The layers, lowest first: a module may import only from its own layer or a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("flowbus._core", "flowbus.exceptions", "flowbus.states", "flowbus.settings", "flowbus.models"),
    ("flowbus._redis",),
    ("flowbus._engine",),
    ("flowbus",),  # the public API: every other module of the package
    ("flowbus_worker",),
)


def layer_of(module: str) -> int | None:
    """The layer of a flowbus or worker module; ``None`` for third-party modules."""
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (level, len(prefix))
    return None if best is None else best[0]


def module_name(path: Path, root: Path, package: str) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def upward_imports(root: Path, package: str) -> list[str]:
    offenders = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root, package)
        own = layer_of(name)
        assert own is not None
        for imported in imported_modules(path):
            level = layer_of(imported)
            if level is not None and level > own:
                offenders.append(f"{name} imports {imported}")
    return offenders


def test_layers_point_one_way() -> None:
    # Given every module of flowbus and of the worker, Then none imports from a higher layer:
    # pure ← Redis ← engine ← public API ← worker, and flowbus never imports the worker
    assert upward_imports(PACKAGE, "flowbus") == []
    assert upward_imports(WORKER, "flowbus_worker") == []


def test_the_import_scan_sees_upward_imports(tmp_path: Path) -> None:
    # Guards the test above against a scanner that finds nothing
    (tmp_path / "_redis").mkdir()
    (tmp_path / "_redis" / "m.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "def f():\n    from flowbus.flows import flow\n"
        "if TYPE_CHECKING:\n    from flowbus_worker import app\n"
    )
    assert sorted(upward_imports(tmp_path, "flowbus")) == [
        "flowbus._redis.m imports flowbus.flows",
        "flowbus._redis.m imports flowbus.flows.flow",
    ]
    assert layer_of("flowbus_worker.app") == 4
    assert layer_of("flowbus._engine.engine") == 2
    assert layer_of("flowbus.states") == 0
    assert layer_of("redis.asyncio") is None


def test_no_top_level_worker_package() -> None:
    # The wheel ships flowbus and flowbus_worker only: a user's own worker.py is never shadowed
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert [Path(p).name for p in packages] == ["flowbus", "flowbus_worker"]


def test_public_names_present_themselves_under_flowbus() -> None:
    private = [
        name
        for name in flowbus.__all__
        if getattr(getattr(flowbus, name), "__module__", "").startswith("flowbus._")
    ]
    assert private == []
    assert repr(flowbus.FlowRunContext).startswith("<class 'flowbus.")
