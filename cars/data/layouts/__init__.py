"""The layouts copies of Stanford Cars come in, each read by its own module.

:func:`read_layout` finds a copy's layout (:mod:`cars.data.layouts.detect`) and
reads it into a :class:`SourceCopy`, the one shape the rest of the data layer
knows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cars.data.errors import DataError
from cars.data.layouts import all_in_one, class_folders, devkit, hf_parquet
from cars.data.layouts.detect import LAYOUTS, FoundLayout, check_source, find_layout
from cars.data.layouts.listing import BBOX_FIELDS, COLUMNS, ImageSource, Issue, SourceCopy

__all__ = [
    "BBOX_FIELDS",
    "COLUMNS",
    "LAYOUTS",
    "FoundLayout",
    "ImageSource",
    "Issue",
    "SourceCopy",
    "check_source",
    "find_layout",
    "read_layout",
]


def read_layout(
    source: str | Path, *, layout: str | None = None, test_labels: str | Path | None = None
) -> SourceCopy:
    """Find the copy in ``source`` (of ``layout``, if given) and read it.

    Args:
        test_labels: the devkit's ``cars_test_annos_withlabels.mat``, where it is
            not beside the copy.

    Raises:
        DataError: no copy is found, or it is malformed.
    """
    root = check_source(source)
    found = find_layout(root, layout)
    if test_labels is not None and found.name != devkit.NAME:
        raise DataError(
            f"--test-labels is for the devkit layout; the {found.name} copy in "
            f"{root} carries its own test labels"
        )
    if found.name == devkit.NAME:
        labels = Path(test_labels) if test_labels is not None else None
        copy = devkit.read_devkit(found.folder, root, labels)
    else:
        read = {
            all_in_one.NAME: all_in_one.read_all_in_one,
            class_folders.NAME: class_folders.read_class_folders,
            hf_parquet.NAME: hf_parquet.read_hf_parquet,
        }[found.name]
        copy = read(found.folder, root)
    also = [
        f"the folder also holds the {name} layout (--layout {name} reads it instead)"
        for name in found.also
    ]
    return replace(copy, notes=(*copy.notes, *also))
