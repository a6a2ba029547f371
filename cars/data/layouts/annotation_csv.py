"""The side files of a class-folder copy: ``names.csv`` and ``anno_train.csv`` / ``anno_test.csv``.

``names.csv`` holds the class names one a line, in the devkit's order, without
a header. Each annotation file has one headerless line per image:
``file name, x1, y1, x2, y2, class``, the class a 1-based index into the names
and the corners 1-based and inclusive, as the devkit's ``.mat`` files have them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cars.data.errors import DataError

NAMES_FILE = "names.csv"
ANNOTATION_FILES = {"train": "anno_train.csv", "test": "anno_test.csv"}
_FIELDS = 6


@dataclass(frozen=True)
class BoxRow:
    """One line of an annotation file: an image's box (1-based inclusive) and class."""

    fname: str
    box: tuple[int, int, int, int]
    class_index: int  # 1-based, into the names
    line: int

    def corners(self) -> dict[str, int]:
        """The box under the devkit's field names (1-based inclusive, as in the file)."""
        return dict(zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), self.box, strict=True))


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            return [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path} cannot be read as CSV: {error}") from error


def read_names_file(path: Path) -> list[str]:
    """The class names of ``names.csv``, in its order."""
    names = []
    for line, row in enumerate(_rows(path), start=1):
        if len(row) != 1:
            raise DataError(
                f"{path}: line {line} has {len(row)} fields; expected one class name a line"
            )
        names.append(row[0].strip())
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise DataError(f"{path} lists {', '.join(map(repr, twice))} more than once")
    return names


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise DataError(
            f"{path}: line {line} has {column} {value.strip()!r}, expected an integer "
            "(lines are: file name, x1, y1, x2, y2, class)"
        ) from None


def read_box_file(path: Path, num_classes: int) -> list[BoxRow]:
    """The lines of an annotation file, checked: six fields, integers, a class in range."""
    rows = _rows(path)
    out = []
    for line, row in enumerate(rows, start=1):
        if len(row) != _FIELDS:
            raise DataError(
                f"{path}: line {line} has {len(row)} fields; expected {_FIELDS} "
                "(file name, x1, y1, x2, y2, class)"
            )
        if line == 1 and not row[5].strip().lstrip("-").isdigit():
            continue  # a header some tools add
        corners = [
            _int(v, path, line, n) for v, n in zip(row[1:5], ("x1", "y1", "x2", "y2"), strict=True)
        ]
        index = _int(row[5], path, line, "class")
        if not 1 <= index <= num_classes:
            raise DataError(
                f"{path}: line {line} has class {index}, outside 1..{num_classes} "
                f"(1-based indices into the {num_classes} class names)"
            )
        box = (corners[0], corners[1], corners[2], corners[3])
        fname = PurePosixPath(row[0].strip().replace("\\", "/")).name
        out.append(BoxRow(fname, box, index, line))
    return out
