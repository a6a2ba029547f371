"""The class-folder layout: ``train/<class name>/*.jpg`` and ``test/<class name>/*.jpg``.

The most used public copies of Stanford Cars keep one folder per class, named by
the class (a ``/`` stored as ``-``), often inside wrapping folders
(``car_data/car_data/train/...``). A folder's images are its class's, whatever
side files say. Where the copy has them (beside the split folders or in a folder
above), ``names.csv`` numbers the classes and ``anno_train.csv`` /
``anno_test.csv`` give each image's box (:mod:`cars.data.layouts.annotation_csv`),
joined to the images by file name within a split. A box whose line names another
class than the image's folder is not used; an annotation line whose image is
absent is an annotated image that is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cars.data.class_order import OFFICIAL_CLASS_NAMES, folder_name, match_key
from cars.data.errors import DataError
from cars.data.layouts.annotation_csv import (
    ANNOTATION_FILES,
    NAMES_FILE,
    BoxRow,
    read_box_file,
    read_names_file,
)
from cars.data.layouts.listing import (
    NOT_IN_ANNOTATIONS,
    FileImages,
    Issue,
    SourceCopy,
    build_records,
    devkit_box,
    find_side_file,
    found_at,
    list_image_files,
    relative_name,
    subfolders,
)

NAME = "class_folders"
SPLITS = ("train", "test")
NEEDS = ("train/<class name>/*.jpg",)
DESCRIPTION = (
    "train/<class name>/*.jpg and test/<class name>/*.jpg, optionally with names.csv "
    "and anno_train.csv / anno_test.csv"
)


def missing(folder: Path, source: Path) -> list[str]:
    """What ``folder`` lacks of the layout (nothing: it is a class-folder copy)."""
    del source
    if any(list_image_files(c, recursive=True) for c in subfolders(folder / "train")):
        return []
    return list(NEEDS)


@dataclass
class _Classes:
    """The copy's classes: names in label order, and each folder's label."""

    names: list[str]
    names_from: str
    from_folders: bool
    csv_names: Sequence[str]  # what an annotation line's class index points into
    by_key: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {match_key(name): i for i, name in enumerate(self.names)}

    def label(self, folder: str) -> int:
        return self.by_key.get(match_key(folder), -1)


def _read_classes(folder: Path, source: Path, folder_classes: list[str]) -> _Classes:
    names_file = find_side_file(folder, source, (NAMES_FILE,))
    if names_file is None:
        return _Classes(folder_classes, "class folder names", True, OFFICIAL_CLASS_NAMES)
    names = read_names_file(names_file)
    classes = _Classes(names, relative_name(names_file, source), False, names)
    strays = [name for name in folder_classes if classes.label(name) < 0]
    if strays:
        more = f" (and {len(strays) - 1} more)" if len(strays) > 1 else ""
        raise DataError(
            f"class folder {strays[0]!r}{more} is not one of the "
            f"{len(names)} classes of {names_file}; rename the folder to its name there "
            "(a '/' written as '-'), or remove names.csv to take the classes from the folders"
        )
    return classes


class _BoxFile:
    """A split's annotation lines, joined to its images by file name and class."""

    def __init__(self, name: str, lines: list[BoxRow], classes: _Classes) -> None:
        self.name, self.lines, self.classes = name, lines, classes
        self.by_fname: dict[str, list[BoxRow]] = {}
        for line in lines:
            self.by_fname.setdefault(line.fname, []).append(line)
        self.used: set[int] = set()

    def box_of(self, fname: str, class_folder: str) -> tuple[dict, tuple[str, str, str] | None]:
        """The box of an image (empty: none), and the issue ``(kind, detail, action)``."""
        candidates = self.by_fname.get(fname, [])
        for line in candidates:
            if match_key(self.classes.csv_names[line.class_index - 1]) == match_key(class_folder):
                self.used.add(line.line)
                return devkit_box(line.corners()), None
        if not candidates:
            return {}, ("bbox_missing", f"not in {self.name}: no box", "box_unknown")
        line = candidates[0]
        self.used.add(line.line)
        other = self.classes.csv_names[line.class_index - 1]
        detail = (
            f"{self.name} line {line.line} gives class {line.class_index} ({other!r}), the "
            f"image lies in {class_folder!r}: the folder's label is kept, the box not used"
        )
        return {}, ("label_conflict", detail, "box_unknown")

    def unused(self) -> list[BoxRow]:
        """The lines no image took: their images are missing."""
        return [line for line in self.lines if line.line not in self.used]


class _Split:
    """One split folder: its images by class, and the records and issues made of them."""

    def __init__(self, folder: Path, source: Path, split: str) -> None:
        self.folder, self.source, self.split = folder / split, source, split
        self.by_class = {
            c.name: list_image_files(c, recursive=True) for c in subfolders(self.folder)
        }
        self.loose = list_image_files(self.folder)
        self.rows: list[dict] = []
        self.issues = [
            Issue(self._name(f), split, NOT_IN_ANNOTATIONS, "not in a class folder", "skipped")
            for f in self.loose
        ]

    def _name(self, path: Path) -> str:
        return relative_name(path, self.source)

    @property
    def found(self) -> int:
        return len(self.loose) + sum(map(len, self.by_class.values()))

    def read(self, classes: _Classes, boxes: _BoxFile | None) -> None:
        for class_folder, files in self.by_class.items():
            label = classes.label(class_folder)
            for file in files:
                row = {"source_file": self._name(file), "split": self.split, "label": label}
                if boxes is not None:
                    box, issue = boxes.box_of(file.name, class_folder)
                    row |= box
                    if issue is not None:
                        self.issues.append(Issue(self._name(file), self.split, *issue))
                self.rows.append(row)
        for line in boxes.unused() if boxes is not None else ():
            self._add_missing(line, classes)

    def _add_missing(self, row: BoxRow, classes: _Classes) -> None:
        name = classes.csv_names[row.class_index - 1]
        path = self.folder / folder_name(name) / row.fname
        record = {
            "source_file": self._name(path),
            "split": self.split,
            "label": classes.label(name),
        }
        self.rows.append(record | devkit_box(row.corners()))


def read_class_folders(folder: Path, source: Path) -> SourceCopy:
    """Read the class-folder copy in ``folder`` (``source``: the folder the user named)."""
    if missing(folder, source):
        raise DataError(f"{folder} is not a class-folder copy: it needs {DESCRIPTION}")
    splits = [_Split(folder, source, split) for split in SPLITS]
    folder_classes = sorted({name for split in splits for name in split.by_class})
    classes = _read_classes(folder, source, folder_classes)
    boxes_from = {}
    for split in splits:
        box_file = find_side_file(folder, source, (ANNOTATION_FILES[split.split],))
        boxes = None
        if box_file is not None:
            boxes_from[split.split] = relative_name(box_file, source)
            lines = read_box_file(box_file, len(classes.csv_names))
            boxes = _BoxFile(boxes_from[split.split], lines, classes)
        split.read(classes, boxes)
    return SourceCopy(
        layout=NAME,
        source=source,
        found_at=found_at(folder, source),
        records=build_records([row for split in splits for row in split.rows]),
        class_names=tuple(classes.names),
        names_from=classes.names_from,
        folder_names=classes.from_folders,
        boxes_from=boxes_from,
        found={split.split: split.found for split in splits},
        images=FileImages(source),
        issues=tuple(issue for split in splits for issue in split.issues),
    )
