"""Reading and writing small files on local disk or any storage ``pyarrow.fs`` opens.

Sweeps and reports may live on ``s3://`` or a shared mount; these helpers keep
that difference in one place. Local writes go to a temporary name first and
are renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow.fs

from cars.paths import is_uri


def join_path(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write a local file through a temporary name in the same folder, then rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file private (0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str, text: str) -> None:
    """Write a text file, locally (atomically) or to a URI."""
    if not is_uri(path):
        write_bytes_atomic(path, text.encode())
        return
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    filesystem.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(fs_path) as f:
        f.write(text.encode())


def read_text(path: str) -> str:
    """Read a text file from local disk or a URI."""
    if not is_uri(path):
        return Path(path).read_text(encoding="utf-8")
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(fs_path) as f:
        return f.read().decode()


def exists(path: str) -> bool:
    """Whether a file or folder exists, locally or at a URI."""
    if not is_uri(path):
        return Path(path).exists()
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    return filesystem.get_file_info(fs_path).type != pyarrow.fs.FileType.NotFound
