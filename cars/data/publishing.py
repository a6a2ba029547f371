"""Putting a finished prepared set at its destination: a local folder or a URI.

The set is always built in a local folder first. Locally it is renamed into
place; at a URI it is uploaded with ``dataset.json`` last, so an interrupted
upload never looks like a complete set.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from cars.data.errors import DataError
from cars.data.info import DATASET_FILE
from cars.data.staging import staged_folder
from cars.paths import is_uri


def _destination_state(out: str) -> str:
    """``"missing"``, ``"empty"``, ``"prepared"`` (holds a set) or ``"other"``."""
    filesystem, path = (
        pafs.FileSystem.from_uri(out) if is_uri(out) else (pafs.LocalFileSystem(), out)
    )
    kind = filesystem.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        return "missing"
    if kind != pafs.FileType.Directory:
        return "other"
    entries = filesystem.get_file_info(pafs.FileSelector(path))
    if not entries:
        return "empty"
    return "prepared" if any(e.base_name == DATASET_FILE for e in entries) else "other"


def check_destination(out: str, force: bool) -> None:
    """Refuse a destination that holds something, unless it is a set and ``force`` is set.

    A folder that holds anything but a prepared set is never replaced, not even
    with ``force``: it may be someone's data.
    """
    state = _destination_state(out)
    if state == "prepared" and not force:
        raise DataError(f"{out} already holds a prepared data set; pass --force to replace it")
    if state == "other":
        raise DataError(
            f"{out} exists and is not a prepared data set (no {DATASET_FILE}); "
            "refusing to replace it, even with --force: choose another --out"
        )


def _upload(local: Path, out: str) -> None:
    filesystem, base = pafs.FileSystem.from_uri(out)
    if filesystem.get_file_info(base).type != pafs.FileType.NotFound:
        filesystem.delete_dir(base)
    filesystem.create_dir(base, recursive=True)
    files = sorted(local.iterdir(), key=lambda p: p.name == DATASET_FILE)
    for file in files:
        with (
            file.open("rb") as source,
            filesystem.open_output_stream(f"{base}/{file.name}") as sink,
        ):
            while chunk := source.read(1 << 24):
                sink.write(chunk)


@contextmanager
def publish_folder(out: str, *, force: bool) -> Iterator[Path]:
    """Yield an empty local folder to build a set in; publish it at ``out`` on success."""
    check_destination(out, force)
    if not is_uri(out):
        with staged_folder(out, replace=force) as staging:
            yield staging
        return
    with tempfile.TemporaryDirectory(prefix="cars-prepared-") as staging:
        yield Path(staging)
        _upload(Path(staging), out)
