"""Reading and writing small files on local disk or any storage ``pyarrow.fs`` opens.

Sweeps and reports may live on ``s3://`` or a shared mount; these helpers keep
that difference in one place. Every write goes through :func:`atomic_path`, so
a reader never sees half a file. A location is a local path or
a URI with its scheme: never a bucket key taken for a local path.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import pyarrow.fs

from cars.paths import is_uri

# URI schemes of the pyarrow filesystems a storage URI opens, by ``type_name``.
_SCHEMES = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs"}
# pyarrow downloads an object in ranged GETs of copy_files' chunk size, 1 MiB by default:
# 84 round trips for one 88 MB Xception checkpoint. Each of copy_files' threads holds one
# chunk, so 16 MiB keeps the requests few and the memory bounded.
_DOWNLOAD_CHUNK_BYTES = 16 << 20


def join_path(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a local path to write ``target`` through; it becomes ``target`` if the block succeeds.

    The caller writes a file or a folder at the yielded path (which does not
    exist yet). Locally it sits beside ``target`` and is renamed onto it; an
    existing folder is set aside first and removed once the new one is in place.
    For a URI it sits in a local temporary folder and is uploaded when complete
    (an object store shows an object only once its upload is whole). On an
    error nothing is left behind and ``target`` stays as it was.
    """
    if is_uri(str(target)):
        with tempfile.TemporaryDirectory(prefix="cars-upload-") as folder:
            staged = Path(folder, "staged")
            yield staged
            _upload(staged, str(target))
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staged = target.parent / f".{target.name}.partial-{tag}"
    try:
        yield staged
        if staged.is_dir() and target.exists():
            old = target.parent / f".{target.name}.old-{tag}"
            target.rename(old)
            try:
                staged.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staged.replace(target)
    finally:
        if staged.is_dir():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            staged.unlink(missing_ok=True)


def _upload(local: Path, uri: str) -> None:
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(uri)
    folder = fs_path if local.is_dir() else fs_path.rsplit("/", 1)[0]
    filesystem.create_dir(folder, recursive=True)
    pyarrow.fs.copy_files(
        str(local),
        fs_path,
        source_filesystem=pyarrow.fs.LocalFileSystem(),
        destination_filesystem=filesystem,
    )


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file, locally or to a URI, through :func:`atomic_path`."""
    with atomic_path(path) as staged:
        staged.write_bytes(data)


def read_bytes(path: str) -> bytes:
    """Read a file from local disk or a URI."""
    if not is_uri(path):
        return Path(path).read_bytes()
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(fs_path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """Write a text file, locally or to a URI, through :func:`atomic_path`."""
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


def list_files(folder: str) -> list[str]:
    """Every file under ``folder`` (local or a URI), as paths relative to it, sorted.

    Names that start with a dot (a write in progress, see :func:`atomic_path`) are
    left out, as is everything under such a folder. A missing folder has no files.
    """
    if is_uri(folder):
        filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(folder)
        base = fs_path.rstrip("/")
        selector = pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = filesystem.get_file_info(selector)
        names = [
            info.path[len(base) :].lstrip("/")
            for info in infos
            if info.type == pyarrow.fs.FileType.File
        ]
    else:
        root = Path(folder)
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(n for n in names if not any(part.startswith(".") for part in n.split("/")))


def remove(path: str) -> None:
    """Delete a file or a folder with everything in it, locally or at a URI; gone is fine."""
    if not is_uri(path):
        target = Path(path)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        return
    filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    kind = filesystem.get_file_info(fs_path).type
    if kind == pyarrow.fs.FileType.Directory:
        filesystem.delete_dir(fs_path)
    elif kind == pyarrow.fs.FileType.File:
        filesystem.delete_file(fs_path)


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
                chunk_size=_DOWNLOAD_CHUNK_BYTES,
            )
        yield local
