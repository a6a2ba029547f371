"""Reading and writing small files on local disk or any storage ``pyarrow.fs`` opens.

Sweeps and reports may live on ``s3://`` or a shared mount; these helpers keep
that difference in one place. Local writes go to a temporary name first and
are renamed, so a reader never sees half a file. A location is a local path or
a URI with its scheme: never a bucket key taken for a local path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import pyarrow.fs

from cars.paths import is_uri

# URI schemes of the pyarrow filesystems a storage URI opens, by ``type_name``.
_SCHEMES = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs"}


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


def write_bytes(path: str, data: bytes) -> None:
    """Write a file, locally (atomically) or to a URI.

    An object store's upload appears whole when it completes, or not at all.
    """
    if not is_uri(path):
        write_bytes_atomic(path, data)
        return
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    filesystem.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(fs_path) as f:
        f.write(data)


def read_bytes(path: str) -> bytes:
    """Read a file from local disk or a URI."""
    if not is_uri(path):
        return Path(path).read_bytes()
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(fs_path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """Write a text file, locally (atomically) or to a URI."""
    write_bytes(path, text.encode())


def read_text(path: str) -> str:
    """Read a text file from local disk or a URI."""
    if not is_uri(path):
        return Path(path).read_text(encoding="utf-8")
    return read_bytes(path).decode()


def exists(path: str) -> bool:
    """Whether a file or folder exists, locally or at a URI."""
    if not is_uri(path):
        return Path(path).exists()
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    return filesystem.get_file_info(fs_path).type != pyarrow.fs.FileType.NotFound


def location_of(filesystem: pyarrow.fs.FileSystem, path: str) -> str:
    """A path on ``filesystem`` as a location: a local path, or a URI with its scheme.

    Ray's ``Checkpoint.path`` is a path on ``Checkpoint.filesystem`` without the
    scheme (``bucket/key`` on S3); ``location_of(checkpoint.filesystem,
    checkpoint.path)`` is what the project's readers take. The filesystem's
    settings (region, endpoint) come back from the environment, as they did
    when the storage URI was opened.
    """
    kind = filesystem.type_name
    if kind == "local":
        return path
    if kind not in _SCHEMES:
        raise ValueError(
            f"cannot name {path!r} on a {kind!r} filesystem as a URI; "
            f"storage must be a local folder or one of {sorted(_SCHEMES.values())}://"
        )
    return f"{_SCHEMES[kind]}://{path.lstrip('/')}"


@contextmanager
def local_copy(path: str) -> Iterator[Path]:
    """Yield a local path holding the file or folder at ``path``.

    A local path is yielded as it is; a URI is downloaded through
    ``pyarrow.fs`` into a temporary folder, removed afterwards. A URI where
    nothing exists yields a local path that does not exist either, so callers
    report a missing file the same way for both.
    """
    if not is_uri(path):
        yield Path(path)
        return
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    with tempfile.TemporaryDirectory(prefix="cars-download-") as folder:
        local = Path(folder, PurePosixPath(fs_path).name or "root")
        kind = filesystem.get_file_info(fs_path).type
        if kind == pyarrow.fs.FileType.Directory:
            local.mkdir()  # copy_files writes a folder's files but creates no folder
        if kind != pyarrow.fs.FileType.NotFound:
            pyarrow.fs.copy_files(
                fs_path,
                str(local),
                source_filesystem=filesystem,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )
        yield local
