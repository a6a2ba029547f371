"""What the report's Grad-CAMs explain: the test inputs the models were scored on, or,
when the trials cropped them to the cars' boxes, the whole test photos.

Cropped to its box (``--bbox-crop``), a car fills its input: the box covers about
90 % of it, no CAM can put much more of its energy on the car than a uniform map
does, and pointing at the centre of the input always hits. The measures then
cannot tell a CAM on the car from one on the background. So for such trials the
CAMs explain the whole photo, resized so that the car keeps the scale the model
learned it at: a trial's eval transform scales the crop's shorter side to the
input, and the photo's shorter side is larger than the crop's by a factor that
varies from image to image, so the photos are explained at the input size times
the median factor of the test images with a known box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cars.config import TrainConfig
from cars.data import CarsDataset, create_transform_for, expand_box, map_box_to_eval_input

# Xception's output stride: a size of whole act4 cells (one per 32 input pixels).
PHOTO_SIZE_STEP = 32
# Past this, the photo's CAM would cost as much as 16 inputs of the scored size.
MAX_PHOTO_SCALE = 4.0

INPUTS = "scored inputs"
PHOTOS = "whole photos"


@dataclass(frozen=True)
class CamView:
    """The images the CAMs explain: ``kind`` (``INPUTS`` or ``PHOTOS``) at ``image_size``."""

    kind: str
    image_size: int
    bbox_crop: bool
    bbox_margin: float

    @classmethod
    def of_inputs(cls, config: TrainConfig) -> CamView:
        """The test inputs as a trial of ``config`` was scored on them."""
        return cls(INPUTS, config.image_size, config.bbox_crop, config.bbox_margin)

    def create_dataset(self, data: str) -> CarsDataset:
        """The test split of ``data`` as this view shows it."""
        return CarsDataset(
            data,
            "test",
            create_transform_for("none", self.image_size, is_training=False),
            bbox_crop=self.bbox_crop,
            bbox_margin=self.bbox_margin,
        )

    def input_box(self, dataset: CarsDataset, index: int) -> tuple[float, float, float, float]:
        """An image's box in this view's input pixels; NaNs when the box is unknown."""
        box = dataset.box(index)
        if box is None:
            return (np.nan,) * 4
        width, height = (int(v) for v in dataset.sizes[index])
        return map_box_to_eval_input(
            box,
            width,
            height,
            self.image_size,
            bbox_crop=self.bbox_crop,
            bbox_margin=self.bbox_margin,
            transform=dataset.transform,
        )


def photo_scale(dataset: CarsDataset, margin: float) -> float:
    """The median factor by which a photo's shorter side exceeds its crop's; 1 without boxes."""
    factors = []
    for index in np.flatnonzero(dataset.has_box):
        width, height = (int(v) for v in dataset.sizes[index])
        box = tuple(int(v) for v in dataset.boxes[index])
        x1, y1, x2, y2 = expand_box(box, width, height, margin)
        factors.append(min(width, height) / min(x2 - x1, y2 - y1))
    return float(np.median(factors)) if factors else 1.0


def choose_cam_view(config: TrainConfig, dataset: CarsDataset) -> CamView:
    """The view of the test split ``dataset`` (as ``config`` scored it) that the CAMs explain."""
    if not config.bbox_crop:
        return CamView.of_inputs(config)
    scale = min(photo_scale(dataset, config.bbox_margin), MAX_PHOTO_SCALE)
    steps = max(1, round(config.image_size * scale / PHOTO_SIZE_STEP))
    size = max(config.image_size, steps * PHOTO_SIZE_STEP)
    return CamView(PHOTOS, size, bbox_crop=False, bbox_margin=config.bbox_margin)
