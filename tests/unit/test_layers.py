"""The folders show the layers: the Ray-free core, data, report and figures import without
Ray, the report reads runs through ``cars.runs`` and never the Ray layer, and no module of
the project imports a private module of Ray."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cars.paths import PROJECT_ROOT

RAY_FREE = ("learn", "data", "report", "figures")


def _modules(package: str) -> list[str]:
    """Every module of ``cars.<package>``, its subpackages' too (``cars.data.layouts``)."""
    root = PROJECT_ROOT / "cars"
    paths = sorted((root / package).rglob("*.py"))
    names = [".".join(p.relative_to(root.parent).with_suffix("").parts) for p in paths]
    return [name.removesuffix(".__init__") for name in names]


def _import_without_ray(modules: list[str]) -> list[str]:
    """Import ``modules`` in a fresh Python where ``import ray`` fails; the cars modules loaded."""
    code = (
        "import importlib, json, sys\n"
        "sys.modules['ray'] = None\n"  # a None entry makes every `import ray` fail
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cars'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _module_path(name: str) -> Path | None:
    """The file of the project's module ``name`` (a package's ``__init__.py``), if any."""
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_on_import(name: str) -> set[str]:
    """The modules that importing ``name`` imports in its turn: module-level statements,
    class bodies and ``try``/``if`` blocks, but neither function bodies (lazy imports)
    nor ``if TYPE_CHECKING:`` blocks."""
    path = _module_path(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.AST):
                    visit(block)  # type: ignore[arg-type]

    visit(ast.parse(path.read_text()).body)
    # ``import a.b.c`` imports the packages ``a`` and ``a.b`` first.
    return {".".join(n.split(".")[:i]) for n in found for i in range(1, n.count(".") + 2)}


def _import_closure(modules: list[str]) -> dict[str, str]:
    """Every module that importing ``modules`` reaches through the project's own modules,
    each with the project module that imports it."""
    reached: dict[str, str] = {m: "" for m in modules}
    pending = list(modules)
    while pending:
        name = pending.pop()
        for imported in _imports_on_import(name):
            if imported in reached:
                continue
            reached[imported] = name
            if imported.split(".")[0] == "cars" and _module_path(imported) is not None:
                pending.append(imported)
    return reached


def test_the_ray_free_folders_reach_no_ray_through_their_imports() -> None:
    # The fast twin of the import test below: the same closure, read from the sources.
    modules = [m for package in RAY_FREE for m in _modules(package)] + ["cars.runs"]
    reached = _import_closure(modules)
    assert "cars.learn.engine" in reached and "cars.report.writer" in reached
    assert "torch" in reached and "cars.storage" in reached  # the closure follows imports
    offenders = {
        name: importer
        for name, importer in reached.items()
        if name == "ray" or name.startswith(("ray.", "cars.cluster"))
    }
    assert not offenders, f"imported at import time (module: by): {offenders}"


@pytest.mark.slow
def test_the_core_data_report_and_figures_import_without_ray() -> None:
    modules = [m for package in RAY_FREE for m in _modules(package)] + ["cars.runs"]
    assert len(modules) > 40  # every module of the four folders, not a sample
    loaded = _import_without_ray(modules)
    assert "cars.learn.engine" in loaded and "cars.report.writer" in loaded
    # Nothing of the Ray layer comes along (it would have failed on `import ray` anyway,
    # unless it imported Ray lazily).
    assert not [m for m in loaded if m.startswith("cars.cluster")], loaded


def test_no_module_imports_a_private_module_of_ray() -> None:
    # Ray moves its private modules (``_internal``, ``_private``) without notice.
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}"
        for folder in ("cars", "jobs")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "_internal" in line or "_private" in line
    ]
    assert not offenders, "\n".join(offenders)


def test_ray_free_folders_name_no_ray_layer_module() -> None:
    # A lazy import inside a function would pass the import test above.
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for package in RAY_FREE
        for path in (PROJECT_ROOT / "cars" / package).glob("*.py")
        if re.search(r"^\s*(from|import)\s+cars\.cluster\b", path.read_text(), re.MULTILINE)
    ]
    assert not offenders
    assert Path(PROJECT_ROOT / "cars" / "runs.py").is_file()
