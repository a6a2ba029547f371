"""Writing a folder through a temporary sibling, so nothing half-written looks complete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cars.data.errors import DataError
from cars.storage import atomic_path


def is_empty_folder(path: Path) -> bool:
    """Whether ``path`` is a folder with nothing in it."""
    return path.is_dir() and next(path.iterdir(), None) is None


@contextmanager
def staged_folder(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; move it there on success.

    An existing ``target`` is replaced only when ``replace`` is set (or it is an
    empty folder), and only once the new folder is complete. On an error, or an
    interrupt, the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if target.exists() and not (replace or is_empty_folder(target)):
        raise DataError(f"{target} already exists and is not empty; choose a new or empty folder")
    with atomic_path(target) as staging:
        staging.mkdir()
        yield staging
