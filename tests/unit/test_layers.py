"""The folders show the layers: the Ray-free core, data, report and figures import without
Ray, the report reads runs through ``cars.runs`` and never the Ray layer, and no module of
the project imports a private module of Ray."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
