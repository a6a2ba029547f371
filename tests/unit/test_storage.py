"""Small files on local disk and on URIs (``file://`` here, through pyarrow, as ``s3://`` goes):
paths join as each kind expects, text survives a round trip, and writes are atomic.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cars.storage import exists, join_path, read_text, write_bytes_atomic, write_text

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
    write_bytes_atomic(folder / "three.bin", b"\x00\x01")
    assert sorted(p.name for p in folder.iterdir()) == ["one.txt", "three.bin", "two.txt"]
    assert (folder / "three.bin").read_bytes() == b"\x00\x01"


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "trials.parquet"
    write_bytes_atomic(target, b"old content")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_atomic_write_gives_the_file_the_usual_permissions(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_text(str(atomic), "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
