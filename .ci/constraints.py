"""Write ``constraints.txt``: the exact versions a fresh ``pip install -e '.[test]'`` resolves.

    python .ci/constraints.py                 # a fresh virtual environment, then constraints.txt
    python .ci/constraints.py --venv DIR      # the versions installed in DIR instead
    python .ci/constraints.py --venv DIR --check   # say how DIR differs; write nothing

The fresh environment is made outside the clone with the Python running this script and
removed afterwards; the install is the README's, so what the package index serves within
``pyproject.toml``'s ranges today is what gets recorded. Commit the file once ``.ci/run``
has passed with those versions. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def create_venv(where: Path) -> Path:
    """A new virtual environment at ``where`` made by this Python; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def install_project(python: Path) -> None:
    """The README's install, from the project root."""
    subprocess.run([python, "-m", "pip", "install", "-e", ".[test]"], cwd=PROJECT_ROOT, check=True)


def read_installed(python: Path) -> dict[str, str]:
    """Every distribution installed in ``python``'s environment but the project, by name."""
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    versions = {}
    for line in frozen.splitlines():
        if not line or line.startswith("#"):
            continue
        match = PINNED.match(line)
        if match is None:  # a path or URL install, which no other machine can reproduce
            raise SystemExit(f"error: {line!r} is not a release from the index; reinstall it")
        versions[match.group(1)] = match.group(2)
    return versions


def describe_python(python: Path) -> str:
    """``CPython 3.11.7, Linux x86_64`` for the environment of ``python``."""
    code = (
        "import platform; print(f'{platform.python_implementation()} "
        "{platform.python_version()}, {platform.system()} {platform.machine()}')"
    )
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout


def render(versions: dict[str, str], where: str) -> str:
    """The text of ``constraints.txt``."""
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    header = f"""\
# The exact versions a fresh `pip install -e '.[test]'` resolved on {today}
# ({where.strip()}); committed once .ci/run passed with them.
#
#   pip install -e '.[test]' -c constraints.txt     installs this tested set
#   python .ci/constraints.py                       writes this file anew
#
# pip applies a constraint only to a package the install needs, so the pins of
# packages another platform does without (torch's CUDA wheels: nvidia-*, triton)
# are ignored there.
"""
    lines = [f"{name}=={version}" for name, version in sorted(versions.items(), key=_key)]
    return header + "\n".join(lines) + "\n"


def _key(item: tuple[str, str]) -> str:
    return re.sub(r"[-_.]+", "-", item[0]).lower()


def read_constraints(path: Path) -> dict[str, str]:
    """The pins of an existing constraints file, by name."""
    pins = {}
    for line in path.read_text().splitlines():
        match = PINNED.match(line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def compare(recorded: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose version differs, was added or is gone."""
    recorded_by = {_key((n, "")): (n, v) for n, v in recorded.items()}
    installed_by = {_key((n, "")): (n, v) for n, v in installed.items()}
    changes = []
    for key in sorted(recorded_by.keys() | installed_by.keys()):
        before, after = recorded_by.get(key), installed_by.get(key)
        if before is None:
            changes.append(f"  {after[0]} {after[1]} (new)")
        elif after is None:
            changes.append(f"  {before[0]} {before[1]} (no longer installed)")
        elif before[1] != after[1]:
            changes.append(f"  {after[0]} {before[1]} -> {after[1]}")
    return changes


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` under a temporary name first, so no half-written file stays."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main() -> None:
    """Parse the options; install into a fresh environment unless given one; write or check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="read this environment instead of making one")
    parser.add_argument("--check", action="store_true", help="compare with constraints.txt only")
    args = parser.parse_args()
    made = None
    try:
        if args.venv is None:
            made = Path(tempfile.mkdtemp(prefix="cars-constraints-"))
            started = time.monotonic()
            python = create_venv(made / "venv")
            install_project(python)
            print(f"a fresh environment and its install took {time.monotonic() - started:.0f} s")
        else:
            python = args.venv / "bin" / "python"
            if not python.is_file():
                raise SystemExit(f"error: {args.venv} is not a virtual environment (no bin/python)")
        installed = read_installed(python)
        if args.check:
            changes = compare(read_constraints(CONSTRAINTS), installed)
            if changes:
                print("The index served other versions than constraints.txt records (tested here):")
                print("\n".join(changes))
                print("Once .ci/run passes, record them with: python .ci/constraints.py")
            else:
                print("constraints.txt holds exactly the versions installed here.")
            return
        write_atomically(CONSTRAINTS, render(installed, describe_python(python)))
        print(f"{len(installed)} versions written to {CONSTRAINTS}")
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
