"""The devkit layout: Stanford's own archives, as unpacked by their users.

``cars_train/`` and ``cars_test/`` hold the images, possibly one level deeper
(``cars_train/cars_train/``, as archives unpacked into a folder of their name
are); the devkit's ``cars_meta.mat`` (``class_names``), ``cars_train_annos.mat``
and ``cars_test_annos.mat`` lie in ``devkit/`` or beside the image folders (a
devkit downloaded apart), here or in a folder above. The test labels are in
``cars_test_annos_withlabels.mat``, found the same way or named by the user;
without it the test images are kept with unknown labels. A copy without its test
part (no ``cars_test_annos.mat``) has no test split.
"""

from __future__ import annotations

from pathlib import Path

from cars.data.errors import DataError
from cars.data.layouts.listing import (
    BBOX_FIELDS,
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
)
from cars.data.matfiles import read_cell_strings, read_struct_records

NAME = "devkit"
META, TRAIN_ANNOS, TEST_ANNOS = "cars_meta.mat", "cars_train_annos.mat", "cars_test_annos.mat"
TEST_LABELS_FILE = "cars_test_annos_withlabels.mat"
NEEDS = ("cars_train/", f"devkit/{META}", f"devkit/{TRAIN_ANNOS}")
# The devkit's test part, optional: without it there is no test split.
TEST_PART = ("cars_test/", f"devkit/{TEST_ANNOS}")
DESCRIPTION = f"{', '.join(NEEDS)}, and for a test split {', '.join(TEST_PART)}"


def _devkit_file(folder: Path, source: Path, name: str) -> Path | None:
    return find_side_file(folder, source, (f"devkit/{name}", name))


def missing(folder: Path, source: Path) -> list[str]:
    """What ``folder`` lacks of the layout (nothing: it is a devkit copy)."""
    lacks = [] if (folder / "cars_train").is_dir() else ["cars_train/"]
    return lacks + [
        f"devkit/{name}"
        for name in (META, TRAIN_ANNOS)
        if _devkit_file(folder, source, name) is None
    ]


def _image_folder(folder: Path, name: str) -> Path:
    # Some distributions unpack each archive into a folder of the same name.
    return folder / name / name if (folder / name / name).is_dir() else folder / name


def label_of(value: int | str, file: Path, row: int, num_classes: int) -> int:
    """A 1-based class of record ``row`` of ``file`` as a 0-based label, checked."""
    if not isinstance(value, int) or not 1 <= value <= num_classes:
        raise DataError(
            f"{file}: record {row} has class {value!r}, outside the allowed range "
            f"1..{num_classes} (1-based indices into the {num_classes} class names)"
        )
    return value - 1


class _Split:
    """One split's images and records as they are read."""

    def __init__(self, source: Path, folder: Path, split: str) -> None:
        self.source, self.folder, self.split = source, folder, split
        self.files = list_image_files(folder)
        self.rows: list[dict] = []

    def add(self, fname: str, label: int, record: dict) -> None:
        source_file = relative_name(self.folder / fname, self.source)
        self.rows.append({"source_file": source_file, "split": self.split, "label": label})
        self.rows[-1].update(devkit_box(record))

    def unlisted(self, why: str) -> list[Issue]:
        listed = {row["source_file"] for row in self.rows}
        return [
            Issue(name, self.split, NOT_IN_ANNOTATIONS, why, "skipped")
            for name in (relative_name(file, self.source) for file in self.files)
            if name not in listed
        ]


def _test_labels(
    folder: Path, source: Path, given: Path | None, num_classes: int
) -> tuple[dict[str, int], Path | None]:
    file = given or _devkit_file(folder, source, TEST_LABELS_FILE)
    if file is None:
        return {}, None
    if not file.is_file():
        raise DataError(f"test labels file {file} does not exist; check --test-labels")
    records = read_struct_records(file, "annotations", ["class", "fname"])
    known = {
        str(r["fname"]): label_of(r["class"], file, i, num_classes)
        for i, r in enumerate(records, 1)
    }
    return known, file


def _read_test(
    test: _Split, annos: Path | None, labels: dict[str, int], num_classes: int
) -> list[Issue]:
    if annos is None:
        why = f"no {TEST_ANNOS}: the test images are not annotated"
        return test.unlisted(why)
    fields = [*BBOX_FIELDS, "fname"]
    for i, record in enumerate(read_struct_records(annos, "annotations", fields, ["class"]), 1):
        fname = str(record["fname"])
        if "class" in record:
            label = label_of(record["class"], annos, i, num_classes)
        else:
            label = labels.get(fname, -1)
        test.add(fname, label, record)
    return test.unlisted(f"not listed in {TEST_ANNOS}")


def read_devkit(folder: Path, source: Path, test_labels: Path | None = None) -> SourceCopy:
    """Read the devkit copy in ``folder`` (``source``: the folder the user named)."""
    meta = _devkit_file(folder, source, META)
    train_annos = _devkit_file(folder, source, TRAIN_ANNOS)
    if meta is None or train_annos is None or not (folder / "cars_train").is_dir():
        raise DataError(
            f"{folder} is not a devkit copy: {', '.join(missing(folder, source))} not found "
            "(the devkit's .mat files may also lie beside cars_train/); unpack the devkit "
            "next to cars_train/"
        )
    class_names = read_cell_strings(meta, "class_names")
    n = len(class_names)
    train = _Split(source, _image_folder(folder, "cars_train"), "train")
    fields = [*BBOX_FIELDS, "class", "fname"]
    for i, record in enumerate(read_struct_records(train_annos, "annotations", fields), 1):
        train.add(str(record["fname"]), label_of(record["class"], train_annos, i, n), record)
    issues = train.unlisted(f"not listed in {TRAIN_ANNOS}")
    test = _Split(source, _image_folder(folder, "cars_test"), "test")
    test_annos = _devkit_file(folder, source, TEST_ANNOS)
    labels, labels_file = _test_labels(folder, source, test_labels, n)
    issues += _read_test(test, test_annos, labels, n)
    notes = _notes(test, test_annos, labels_file and _shown(labels_file, source))
    boxes = {"train": _shown(train_annos, source)}
    if test_annos is not None:
        boxes["test"] = _shown(test_annos, source)
    return SourceCopy(
        layout=NAME,
        source=source,
        found_at=found_at(folder, source),
        records=build_records(train.rows + test.rows),
        class_names=tuple(class_names),
        names_from=_shown(meta, source),
        folder_names=False,
        boxes_from=boxes,
        found={"train": len(train.files), "test": len(test.files)},
        images=FileImages(source),
        issues=tuple(issues),
        notes=notes,
    )


def _shown(path: Path, source: Path) -> str:
    """A side file as a person would name it: relative to the copy where it lies in it."""
    resolved = path.resolve()
    return relative_name(resolved, source) if source in resolved.parents else str(path)


def _notes(test: _Split, annos: Path | None, labels_file: str | None) -> tuple[str, ...]:
    if annos is None:
        return ("no test split: the copy has no cars_test_annos.mat",) if not test.files else ()
    if labels_file is not None:
        return (f"test labels from {labels_file}",)
    if any(row["label"] < 0 for row in test.rows):
        return (
            f"no {TEST_LABELS_FILE} (looked beside cars_test/, in devkit/ and the folders "
            "above; --test-labels FILE names it): the test images are kept without labels",
        )
    return ()
