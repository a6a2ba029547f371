"""Reading a copy of Stanford Cars, whatever its layout, into the devkit's classes.

The layouts (:mod:`cars.data.layouts`): ``devkit`` (``cars_train/``,
``cars_test/``, the devkit's ``.mat`` files), ``all_in_one`` (``car_ims/``,
``cars_annos.mat``), ``class_folders`` (``train/<class name>/``, optionally with
``names.csv`` and ``anno_*.csv``) and ``hf_parquet`` (the Hub's Parquet files and
dataset card), each found at any wrapping depth. Their classes are then put in
one order (:mod:`cars.data.class_order`): a copy of Stanford Cars gets the
devkit's 196 names and indices whatever its layout.

Boxes come out in the project's convention (:data:`cars.data.boxes.BBOX_CONVENTION`):
0-based, ``x2``/``y2`` exclusive. Stanford Cars stores 1-based inclusive corners,
so ``(x1, y1, x2, y2)`` in its files becomes ``(x1 - 1, y1 - 1, x2, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from cars.data.class_order import ClassOrder, order_classes
from cars.data.layouts import (
    BBOX_FIELDS,
    COLUMNS,
    LAYOUTS,
    SourceCopy,
    check_source,
    find_layout,
    read_layout,
)

__all__ = [
    "BBOX_FIELDS",
    "COLUMNS",
    "LAYOUTS",
    "OrderedCopy",
    "detect_layout",
    "read_annotations",
    "read_class_names",
    "read_source",
]


@dataclass(frozen=True)
class OrderedCopy:
    """A copy as read (:class:`SourceCopy`), its labels renumbered into ``order``."""

    copy: SourceCopy
    order: ClassOrder

    @property
    def records(self) -> pd.DataFrame:
        """The copy's records with prepared labels and class names."""
        return self.copy.records

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names in label order."""
        return self.order.names


def read_source(
    root: str | Path, *, layout: str | None = None, test_labels: str | Path | None = None
) -> OrderedCopy:
    """Read the copy in ``root`` and number its classes as the devkit does, where it can.

    Raises:
        DataError: no layout is found, or the copy is malformed.
    """
    copy = read_layout(root, layout=layout, test_labels=test_labels)
    order = order_classes(copy.class_names, copy.names_from, folders=copy.folder_names)
    records = copy.records.copy()
    labels = records["label"].to_numpy(copy=True)
    known = labels >= 0
    labels[known] = order.new_label[labels[known]]
    records["label"] = labels
    records["class_name"] = [order.names[label] if label >= 0 else "" for label in labels]
    return OrderedCopy(copy=replace(copy, records=records), order=order)


def detect_layout(root: str | Path) -> str:
    """Which layout the copy in ``root`` is in: one of :data:`LAYOUTS`.

    Raises:
        DataError: listing every layout and the files it needs, when none matches.
    """
    return find_layout(check_source(root)).name


def read_class_names(root: str | Path) -> list[str]:
    """The class names, in label order (label ``i`` is ``class_names[i]``)."""
    return list(read_source(root).class_names)


def read_annotations(root: str | Path) -> pd.DataFrame:
    """One row per image record of a copy, in the copy's order.

    Columns: ``source_file`` (posix path relative to ``root``; for Parquet
    exports ``<file>#<row>``), ``split`` (``train``/``test``), ``label`` (0-based;
    -1 where the test labels are unknown), ``class_name`` (``""`` where unknown)
    and ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2`` (0-based, ``x2``/``y2``
    exclusive; null where the copy has no box for the image). Images are not
    opened here: a listed image that is missing, or listed twice, is for the
    caller to handle.

    Raises:
        DataError: a missing folder or file, a missing field, a class id out of range.
    """
    return read_source(root).records
