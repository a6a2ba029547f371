"""The data layer: readers of every layout Stanford Cars comes in, the synthetic
generator, prepared sets, the training ``Dataset``, its transforms and the
normalisation on the device.

``CarsDataset`` and the transforms need torch and timm; they are imported on
first use, so that preparing data (``jobs/prepare.py``) starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cars.data.boxes import BBOX_CONVENTION, expand_box
from cars.data.errors import DataError
from cars.data.info import DATASET_FILE, SPLITS, DatasetInfo, read_dataset_info
from cars.data.prepare import (
    MAX_SIDE,
    VAL_FRACTION,
    PrepareResult,
    prepare_dataset,
    split_train_val,
)
from cars.data.problems import Problem
from cars.data.readers import (
    LAYOUTS,
    detect_layout,
    read_annotations,
    read_class_names,
    read_source,
)
from cars.data.synthetic import SyntheticCars, prepare_synthetic, write_synthetic_cars
from cars.data.synthetic_classes import design_classes

if TYPE_CHECKING:
    from cars.data.normalize import create_input_normalizer, normalize_on_device
    from cars.data.prepared import CarsDataset
    from cars.data.transforms import (
        create_random_erasing,
        create_transform_for,
        map_box_to_eval_input,
    )

_LAZY = {
    "CarsDataset": "cars.data.prepared",
    "create_input_normalizer": "cars.data.normalize",
    "create_random_erasing": "cars.data.transforms",
    "create_transform_for": "cars.data.transforms",
    "normalize_on_device": "cars.data.normalize",
    "map_box_to_eval_input": "cars.data.transforms",
}

__all__ = [
    "BBOX_CONVENTION",
    "DATASET_FILE",
    "LAYOUTS",
    "MAX_SIDE",
    "SPLITS",
    "VAL_FRACTION",
    "CarsDataset",
    "DataError",
    "DatasetInfo",
    "PrepareResult",
    "Problem",
    "SyntheticCars",
    "create_input_normalizer",
    "create_random_erasing",
    "create_transform_for",
    "design_classes",
    "detect_layout",
    "expand_box",
    "map_box_to_eval_input",
    "normalize_on_device",
    "prepare_dataset",
    "prepare_synthetic",
    "read_annotations",
    "read_class_names",
    "read_dataset_info",
    "read_source",
    "split_train_val",
    "write_synthetic_cars",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
