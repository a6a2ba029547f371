"""Where the project's files live, and how paths given on the command line resolve."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = PROJECT_ROOT / "runs"
REPORTS_DIR = PROJECT_ROOT / "reports"
# The backbone feature caches of frozen runs (cars.learn.features): in a sweep's folder,
# or in the storage of single training runs.
FEATURES_DIR = "features"


def is_uri(path: str | Path) -> bool:
    """Whether ``path`` names a location with a scheme (``s3://``, ``file://``, ...)."""
    return "://" in str(path)


def resolve_path(path: str | Path) -> str:
    """Resolve a local path against the project root; leave URIs as they are.

    Jobs run under ``ray job submit`` start in whatever directory the head was
    started from, so a relative path means "relative to the checkout", never
    "relative to the current directory".
    """
    if is_uri(path):
        return str(path)
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = PROJECT_ROOT / p
    return str(p.resolve())
