"""What a prepared data set is: its files, and ``dataset.json`` as a typed record."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from cars.data.errors import DataError
from cars.storage import exists, join_path, read_text

FORMAT = "cars-prepared-v1"
DATASET_FILE = "dataset.json"
SPLITS = ("train", "val", "test")


def split_file(split: str) -> str:
    """The file name of a split's table."""
    if split not in SPLITS:
        raise DataError(f"split={split!r} is not valid: one of {', '.join(SPLITS)}")
    return f"{split}.parquet"


def require_prepared_file(path: str, name: str) -> str:
    """The full path of file ``name`` of the prepared set at ``path``, which must exist.

    Raises:
        DataError: naming the missing folder or file and how to create the set.
    """
    hint = (
        f"create it with `python jobs/prepare.py --source DIR --out {path}` "
        f"(or `--synthetic --out {path}`)"
    )
    if not exists(path):
        raise DataError(f"prepared data set {path} does not exist; {hint}")
    full = join_path(path, name)
    if not exists(full):
        raise DataError(f"{path} is not a prepared data set: {name} is missing; {hint}")
    return full


@dataclass(frozen=True)
class DatasetInfo:
    """The contents of ``dataset.json``: what a prepared set holds and how it was made."""

    name: str
    layout: str
    source: str
    class_names: tuple[str, ...]
    counts: Mapping[str, int]
    class_counts: Mapping[str, tuple[int, ...]]
    unlabelled_test: int
    max_side: int
    val_fraction: float
    seed: int
    bbox_convention: str
    skipped: Mapping[str, int] = field(default_factory=dict)
    repaired: Mapping[str, int] = field(default_factory=dict)
    # Images kept with an unknown (null) box: per split, and per reason.
    unknown_boxes: Mapping[str, int] = field(default_factory=dict)
    unknown_box_reasons: Mapping[str, int] = field(default_factory=dict)
    whole_image_boxes: int = 0  # boxes of a box-cropped copy, taken as the whole image
    box_findings: tuple[str, ...] = ()  # resized or box-cropped copies recognised, in words
    resized: int = 0
    reencoded: int = 0
    problems: tuple[Mapping[str, str], ...] = ()
    generator: Mapping[str, Any] | None = None
    format: str = FORMAT
    # How the copy was read. Sets prepared before these were recorded load with the
    # defaults: a devkit or all-in-one copy with boxes, nothing counted per split.
    found_at: str = "."  # the layout's folder, relative to the source
    class_names_from: str = ""  # the file (or folders) that named the classes
    class_order: str = ""  # "devkit" (Stanford Cars' 196), "source" or "sorted"
    class_note: str = ""  # what the classes are and why in this order, in words
    boxes_from: Mapping[str, str] = field(default_factory=dict)  # split -> file
    has_boxes: bool = True  # False: the copy has no bounding boxes at all
    # Per split of the copy (train holds val): images found, and those not used by reason.
    images_found: Mapping[str, int] = field(default_factory=dict)
    skipped_by_split: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what reading the copy found worth saying once

    @property
    def num_classes(self) -> int:
        """The number of classes (the model's output size)."""
        return len(self.class_names)

    @property
    def is_stanford_cars(self) -> bool:
        """Whether the classes are Stanford Cars' 196, numbered as in the devkit."""
        return self.class_order == "devkit"

    @property
    def has_test_labels(self) -> bool:
        """Whether a test score can be computed: test images exist and all have labels."""
        return self.counts.get("test", 0) > 0 and self.unlabelled_test == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as written to ``dataset.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Rebuild from ``dataset.json``'s values; keys of newer versions are ignored."""
        if values.get("format") != FORMAT:
            raise DataError(
                f"{DATASET_FILE} has format {values.get('format')!r}, expected {FORMAT!r}; "
                "prepare the data set again with this version of jobs/prepare.py"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        known["class_names"] = tuple(known["class_names"])
        known["class_counts"] = {k: tuple(v) for k, v in known["class_counts"].items()}
        known["problems"] = tuple(known.get("problems", ()))
        known["box_findings"] = tuple(known.get("box_findings", ()))
        known["notes"] = tuple(known.get("notes", ()))
        return cls(**known)


def read_dataset_info(path: str | Path) -> DatasetInfo:
    """Read ``dataset.json`` of the prepared set at ``path`` (a folder or a URI)."""
    file = require_prepared_file(str(path), DATASET_FILE)
    try:
        values = json.loads(read_text(file))
    except ValueError as error:
        raise DataError(f"{file} is not valid JSON ({error}); prepare the set again") from error
    try:
        return DatasetInfo.from_dict(values)
    except (KeyError, TypeError) as error:
        raise DataError(f"{file} lacks or garbles {error}; prepare the set again") from error
