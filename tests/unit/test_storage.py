"""Small files on local disk and on URIs (``file://``, and ``s3://`` on moto's S3 server):
paths join as each kind expects, text survives a round trip, writes are atomic, and
anything on a URI can be read through a local copy.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow.fs
import pytest

from cars.storage import (
    atomic_path,
    exists,
    join_path,
    local_copy,
    location_of,
    read_text,
    write_bytes,
    write_text,
)

TEXT = "class names: Citroën C4, Škoda Octavia\nsecond line\n"


def _uri(path: Path) -> str:
    return path.as_uri()


def test_join_path_on_local_paths() -> None:
    assert join_path("/runs", "sweep", "train-1") == "/runs/sweep/train-1"
    assert join_path("/runs/", "dataset.json") == "/runs/dataset.json"
    assert join_path("relative", "a") == "relative/a"


def test_join_path_on_uris_keeps_the_scheme_and_single_slashes() -> None:
    assert join_path("s3://bucket/cars/runs", "sweep", "train-1") == (
        "s3://bucket/cars/runs/sweep/train-1"
    )
    assert join_path("s3://bucket/runs/", "/sweep/", "history.json") == (
        "s3://bucket/runs/sweep/history.json"
    )
    assert join_path("file:///srv/runs", "x") == "file:///srv/runs/x"


def test_local_text_round_trip_creates_folders(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b" / "notes.txt")
    assert not exists(path)
    write_text(path, TEXT)
    assert exists(path)
    assert exists(str(tmp_path / "a" / "b"))
    assert read_text(path) == TEXT
    assert Path(path).read_bytes() == TEXT.encode()


def test_file_uri_text_round_trip_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "store" / "sweep" / "history.json"
    uri = _uri(target)
    assert uri.startswith("file:///")
    assert not exists(uri)
    write_text(uri, TEXT)
    assert exists(uri)
    assert exists(_uri(target.parent))
    assert read_text(uri) == TEXT
    assert read_text(str(target)) == TEXT  # the same file, seen as a local path


def test_exists_is_false_for_missing_paths_and_uris(tmp_path: Path) -> None:
    assert not exists(str(tmp_path / "missing"))
    assert not exists(_uri(tmp_path / "missing" / "file.txt"))
    assert exists(_uri(tmp_path))


@pytest.mark.parametrize("kind", ["local", "uri"])
def test_writing_again_replaces_the_whole_content(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out" / "summary.md"
    path = str(target) if kind == "local" else _uri(target)
    write_text(path, "a much longer first version\n" * 10)
    write_text(path, "short")
    assert read_text(path) == "short"
    assert target.read_text() == "short"


@pytest.mark.parametrize("kind", ["local", "uri"])
def test_writes_leave_no_temporary_files(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "out"
    for name in ("one.txt", "two.txt", "one.txt"):
        path = str(folder / name) if kind == "local" else _uri(folder / name)
        write_text(path, name)
    write_bytes(folder / "three.bin", b"\x00\x01")
    assert sorted(p.name for p in folder.iterdir()) == ["one.txt", "three.bin", "two.txt"]
    assert (folder / "three.bin").read_bytes() == b"\x00\x01"


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "trials.parquet"
    write_bytes(target, b"old content")
    with pytest.raises(TypeError):
        write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_atomic_write_gives_the_file_the_usual_permissions(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_text(str(atomic), "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_text_round_trip_on_s3(s3_bucket: str) -> None:
    path = join_path(s3_bucket, "runs", "sweep", "sweep.json")
    assert not exists(path)
    write_text(path, TEXT)
    assert exists(path)
    assert exists(join_path(s3_bucket, "runs", "sweep"))
    assert read_text(path) == TEXT
    write_text(path, "short")
    assert read_text(path) == "short"


def test_local_copy_of_an_s3_folder_file_and_missing_key(s3_bucket: str) -> None:
    folder = join_path(s3_bucket, "copy", "epoch-0001")
    write_text(join_path(folder, "history.json"), "[]")
    write_text(join_path(folder, "checkpoint.pt"), TEXT)
    with local_copy(folder) as local:
        assert local.is_dir()
        assert sorted(p.name for p in local.iterdir()) == ["checkpoint.pt", "history.json"]
        assert (local / "checkpoint.pt").read_text() == TEXT
    assert not local.exists()  # the download is removed afterwards
    with local_copy(join_path(folder, "history.json")) as local:
        assert local.read_text() == "[]"
    with local_copy(join_path(s3_bucket, "copy", "missing")) as local:
        assert not local.exists()


def test_atomic_folder_replaces_the_old_one_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "report"
    with atomic_path(target) as staged:
        staged.mkdir()
        (staged / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as staged:
        staged.mkdir()
        (staged / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_path(target) as staged:
        staged.mkdir()
        (staged / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_atomic_file_and_folder_on_s3(s3_bucket: str) -> None:
    file = join_path(s3_bucket, "atomic", "summary.md")
    with atomic_path(file) as staged:
        staged.write_text(TEXT)
    assert read_text(file) == TEXT
    folder = join_path(s3_bucket, "atomic", "gradcam")
    with atomic_path(folder) as staged:
        staged.mkdir()
        (staged / "grid.png").write_bytes(b"png")
    with local_copy(folder) as local:
        assert [p.name for p in local.iterdir()] == ["grid.png"]
    with pytest.raises(RuntimeError), atomic_path(join_path(s3_bucket, "never")) as staged:
        staged.write_text("half")
        raise RuntimeError("interrupted")
    assert not exists(join_path(s3_bucket, "never"))


def test_local_copy_of_a_local_path_is_the_path_itself(tmp_path: Path) -> None:
    with local_copy(str(tmp_path)) as local:
        assert local == tmp_path


def test_location_of_gives_back_the_scheme_ray_checkpoint_paths_lack(s3_bucket: str) -> None:
    uri = join_path(s3_bucket, "runs", "train-1", "epoch-0002")
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    assert not path.startswith("s3:")  # as Ray's Checkpoint.path has it
    assert location_of(filesystem, path) == uri
    assert location_of(pyarrow.fs.LocalFileSystem(), "/srv/runs/x") == "/srv/runs/x"
    with pytest.raises(ValueError, match="storage must be a local folder"):
        location_of(pyarrow.fs._MockFileSystem(), "bucket/key")
