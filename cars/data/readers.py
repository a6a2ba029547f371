"""Readers for the two layouts Stanford Cars is distributed in.

``devkit``: ``cars_train/``, ``cars_test/`` (possibly nested one level deeper,
``cars_train/cars_train/``), ``devkit/cars_meta.mat``,
``devkit/cars_train_annos.mat``, ``devkit/cars_test_annos.mat`` and, when
present, ``cars_test_annos_withlabels.mat`` (at the root or in ``devkit/``).
A copy without its test part (no ``cars_test/`` and no
``devkit/cars_test_annos.mat``) is read as having no test images.
``all_in_one``: ``cars_annos.mat`` and ``car_ims/``.

Boxes come out in the project's convention (:data:`cars.data.boxes.BBOX_CONVENTION`):
0-based, ``x2``/``y2`` exclusive. Stanford Cars stores 1-based inclusive corners,
so ``(x1, y1, x2, y2)`` in a ``.mat`` file becomes ``(x1 - 1, y1 - 1, x2, y2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cars.data.errors import DataError
from cars.data.matfiles import read_cell_strings, read_struct_records

BBOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
COLUMNS = ("source_file", "split", "label", "class_name", *BBOX_FIELDS)

# What each layout needs, as shown to a user whose folder matches none.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "devkit": ("cars_train/", "devkit/cars_meta.mat", "devkit/cars_train_annos.mat"),
    "all_in_one": ("cars_annos.mat", "car_ims/"),
}
# The devkit's test part, listed with the layout but optional: without it there is no test split.
DEVKIT_TEST_PART = ("cars_test/", "devkit/cars_test_annos.mat")
TEST_LABELS_FILE = "cars_test_annos_withlabels.mat"


def _missing(root: Path, needs: Sequence[str]) -> list[str]:
    return [
        need
        for need in needs
        if not ((root / need).is_dir() if need.endswith("/") else (root / need).is_file())
    ]


def _check_root(root: str | Path) -> Path:
    path = Path(root)
    if not path.exists():
        raise DataError(f"source folder {path} does not exist; pass the Stanford Cars folder")
    if not path.is_dir():
        raise DataError(f"source {path} is not a folder; pass the Stanford Cars folder")
    return path


def detect_layout(root: str | Path) -> str:
    """Which layout a folder holds: ``"devkit"`` or ``"all_in_one"``.

    Raises:
        DataError: listing every layout and the files it needs, when none matches.
    """
    path = _check_root(root)
    missing = {name: _missing(path, needs) for name, needs in LAYOUTS.items()}
    for name, lacks in missing.items():
        if not lacks:
            return name
    optional = {"devkit": f", and for a test split {', '.join(DEVKIT_TEST_PART)}"}
    expected = "; ".join(
        f"{name}: {', '.join(LAYOUTS[name])}{optional.get(name, '')} (missing {', '.join(lacks)})"
        for name, lacks in missing.items()
    )
    raise DataError(
        f"{path} matches no Stanford Cars layout. Expected one of - {expected}. "
        "Point --source at the folder that holds these files, or use --synthetic."
    )


def read_class_names(root: str | Path) -> list[str]:
    """The class names, in label order (label ``i`` is ``class_names[i]``)."""
    path = _check_root(root)
    if detect_layout(path) == "devkit":
        return read_cell_strings(path / "devkit" / "cars_meta.mat", "class_names")
    return read_cell_strings(path / "cars_annos.mat", "class_names")


def _image_folder(root: Path, name: str) -> str:
    # Some distributions unpack each archive into a folder of the same name.
    return f"{name}/{name}" if (root / name / name).is_dir() else name


def _label(value: int | str, file: Path, row: int, num_classes: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= num_classes:
        raise DataError(
            f"{file}: record {row} has class {value!r}, outside the allowed range "
            f"1..{num_classes} (1-based indices into the {num_classes} class names)"
        )
    return value - 1


def _row(
    source_file: str, split: str, label: int, class_names: Sequence[str], record: dict
) -> dict:
    return {
        "source_file": source_file,
        "split": split,
        "label": label,
        "class_name": class_names[label] if label >= 0 else "",
        "bbox_x1": int(record["bbox_x1"]) - 1,
        "bbox_y1": int(record["bbox_y1"]) - 1,
        "bbox_x2": int(record["bbox_x2"]),
        "bbox_y2": int(record["bbox_y2"]),
    }


def _test_labels_file(root: Path) -> Path | None:
    for candidate in (root / TEST_LABELS_FILE, root / "devkit" / TEST_LABELS_FILE):
        if candidate.is_file():
            return candidate
    return None


def _read_devkit(root: Path, class_names: Sequence[str]) -> list[dict]:
    n = len(class_names)
    rows = []
    train_file = root / "devkit" / "cars_train_annos.mat"
    train_dir = _image_folder(root, "cars_train")
    records = read_struct_records(train_file, "annotations", [*BBOX_FIELDS, "class", "fname"])
    for i, record in enumerate(records, start=1):
        label = _label(record["class"], train_file, i, n)
        rows.append(_row(f"{train_dir}/{record['fname']}", "train", label, class_names, record))

    test_file = root / "devkit" / "cars_test_annos.mat"
    test_dir = _image_folder(root, "cars_test")
    if not test_file.is_file():
        return rows  # a copy of the training part only: no test split
    records = read_struct_records(test_file, "annotations", [*BBOX_FIELDS, "fname"], ["class"])
    known: dict[str, int] = {}
    labels_file = _test_labels_file(root)
    if labels_file is not None:
        with_labels = read_struct_records(labels_file, "annotations", ["class", "fname"])
        for i, record in enumerate(with_labels, start=1):
            known[str(record["fname"])] = _label(record["class"], labels_file, i, n)
    for i, record in enumerate(records, start=1):
        if "class" in record:
            label = _label(record["class"], test_file, i, n)
        else:
            label = known.get(str(record["fname"]), -1)
        rows.append(_row(f"{test_dir}/{record['fname']}", "test", label, class_names, record))
    return rows


def _read_all_in_one(root: Path, class_names: Sequence[str]) -> list[dict]:
    file = root / "cars_annos.mat"
    fields = [*BBOX_FIELDS, "class", "test", "relative_im_path"]
    nested = (root / "car_ims" / "car_ims").is_dir()
    rows = []
    for i, record in enumerate(read_struct_records(file, "annotations", fields), start=1):
        label = _label(record["class"], file, i, len(class_names))
        source_file = str(record["relative_im_path"]).replace("\\", "/")
        if nested and source_file.startswith("car_ims/"):
            source_file = f"car_ims/{source_file}"
        split = "test" if record["test"] else "train"
        rows.append(_row(source_file, split, label, class_names, record))
    return rows


def read_annotations(root: str | Path) -> pd.DataFrame:
    """One row per annotation record of a Stanford Cars folder, in file order.

    Columns: ``source_file`` (posix path relative to ``root``), ``split``
    (``train``/``test``), ``label`` (0-based; -1 where the test labels are
    unknown), ``class_name`` (``""`` where unknown) and ``bbox_x1``,
    ``bbox_y1``, ``bbox_x2``, ``bbox_y2`` (0-based, ``x2``/``y2`` exclusive).
    Images are not opened here: a listed image that is missing, or listed twice,
    is for the caller to handle.

    Raises:
        DataError: a missing folder or file, a missing field, a class id out of range.
    """
    path = _check_root(root)
    layout = detect_layout(path)
    class_names = read_class_names(path)
    read = _read_devkit if layout == "devkit" else _read_all_in_one
    frame = pd.DataFrame(read(path, class_names), columns=list(COLUMNS))
    return frame.astype({"label": "int64", **dict.fromkeys(BBOX_FIELDS, "int64")})
