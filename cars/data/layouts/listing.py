"""What a layout reader finds in a copy: one record per image, its classes, every image file.

Every reader returns a :class:`SourceCopy`, so that preparing a set does not care
which layout a copy came in: the records (``source_file`` relative to the folder
the user named, the copy's own labels, boxes in the project's convention or null),
where the class names and boxes came from, how many images each split holds,
and each image found that no record uses, with its reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

BBOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
COLUMNS = ("source_file", "split", "label", "class_name", *BBOX_FIELDS)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Folders archivers add beside the data (macOS' resource forks), never images.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
NOT_IN_ANNOTATIONS = "not_in_annotations"  # the kind of an image no record uses


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names an image by its suffix; hidden files (``._x.jpg``) are not."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_data_folder_name(name: str) -> bool:
    """Whether a folder of this name belongs to the data (not hidden, not an archiver's)."""
    return not name.startswith(".") and name not in IGNORED_FOLDERS


def subfolders(folder: Path) -> list[Path]:
    """The data folders in ``folder``, sorted (from the directory entries: no file is stat'ed)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.is_dir() and is_data_folder_name(e.name)]
    except OSError:
        return []
    return [folder / name for name in sorted(names)]


def list_image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (and, if ``recursive``, of its data folders), sorted."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.is_file() and is_image_file(Path(entry.name)):
            found.append(folder / entry.name)
        elif recursive and entry.is_dir() and is_data_folder_name(entry.name):
            found += list_image_files(folder / entry.name, recursive=True)
    return found


def relative_name(path: Path, source: Path) -> str:
    """``path`` as a ``source_file``: posix, relative to the folder the user named."""
    return path.relative_to(source).as_posix()


def found_at(folder: Path, source: Path) -> str:
    """Where a layout was found, relative to the folder the user named (``.``: there)."""
    return relative_name(folder, source) if folder != source else "."


def folders_up_to(folder: Path, source: Path) -> list[Path]:
    """``folder`` and each folder above it up to ``source``: where a copy's side files lie.

    Copies put their names and annotation files beside the image folders or a
    few wrapping folders above them (``names.csv`` beside ``car_data/car_data/``).
    """
    chain = [folder]
    while chain[-1] != source and source in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def find_side_file(folder: Path, source: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (relative paths) found in ``folder`` or a folder above it."""
    for place in folders_up_to(folder, source):
        for name in names:
            if (place / name).is_file():
                return place / name
    return None


@dataclass(frozen=True)
class Issue:
    """An image used without something (its box) or not used at all, and why."""

    source_file: str
    split: str
    kind: str
    detail: str
    action: str  # "skipped" or "box_unknown"


class ImageSource(Protocol):
    """Where each record's image bytes come from."""

    def jobs(self, source_files: Sequence[str]) -> Iterator[str | bytes]:
        """For each source file, in order: a path to read, or the image's bytes."""
        ...


@dataclass(frozen=True)
class FileImages:
    """Images stored as files under the folder the user named."""

    source: Path

    def jobs(self, source_files: Sequence[str]) -> Iterator[str | bytes]:
        """The path of each file."""
        return (str(self.source / name) for name in source_files)


@dataclass(frozen=True)
class SourceCopy:
    """A copy of a data set as read, before its classes are put in one order.

    ``records`` has the columns of :data:`COLUMNS`; ``label`` indexes
    ``class_names`` (-1: unknown) and the box columns are null where the copy
    has no box for the image.
    """

    layout: str
    source: Path  # the folder the user named
    found_at: str  # the layout's folder, relative to ``source`` ("." at its root)
    records: pd.DataFrame
    class_names: tuple[str, ...]
    names_from: str  # where the class names came from, in words
    folder_names: bool  # the names are bare folder names, in sorted order
    boxes_from: Mapping[str, str]  # split -> the file its boxes came from; absent: none
    found: Mapping[str, int]  # image files (or stored images) found, per split
    images: ImageSource
    issues: tuple[Issue, ...] = ()
    notes: tuple[str, ...] = field(default=())  # what the reader found worth saying once


def build_records(rows: list[dict]) -> pd.DataFrame:
    """The records frame of :class:`SourceCopy` from plain dicts (missing boxes null)."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["class_name"] = ""  # named once the classes are in their order
    return frame.astype({"label": "int64", **dict.fromkeys(BBOX_FIELDS, "Int64")})


def devkit_box(record: Mapping[str, int | str]) -> dict[str, int]:
    """A Stanford Cars box (1-based inclusive corners) in the project's convention."""
    return {
        "bbox_x1": int(record["bbox_x1"]) - 1,
        "bbox_y1": int(record["bbox_y1"]) - 1,
        "bbox_x2": int(record["bbox_x2"]),
        "bbox_y2": int(record["bbox_y2"]),
    }
