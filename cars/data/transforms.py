"""Image transforms for training and evaluation, built with timm's ``create_transform``.

Policies: ``none`` (resize + centre crop, also every evaluation), ``basic``
(random resized crop + horizontal flip), ``strong`` (``basic`` + RandAugment +
random erasing). Normalisation, interpolation and crop_pct are those of timm's
pretrained ``legacy_xception`` config: mean = std = 0.5, so pixels are in [-1, 1].
Horizontal flips are kept: facing left or right is never what tells cars apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import timm
from timm.data import create_transform

from cars.config import AUGMENTS
from cars.data.boxes import Box, expand_box
from cars.data.errors import DataError

MODEL_NAME = "legacy_xception"
PRETRAINED_CFG = timm.get_pretrained_cfg(MODEL_NAME)
# ImageNet's default (0.08, 1) often cuts the car out of a photo of one car.
TRAIN_SCALE = (0.25, 1.0)
RAND_AUGMENT = "rand-m9-mstd0.5-inc1"
RANDOM_ERASING_PROB = 0.25


def create_transform_for(
    augment: str, image_size: int, *, is_training: bool
) -> Callable[[Any], Any]:
    """The transform of an augmentation policy: a PIL image in, a normalised tensor out.

    Evaluation (``is_training=False``) always uses the deterministic ``none`` geometry.
    """
    if augment not in AUGMENTS:
        raise DataError(f"augment={augment!r} is not valid: one of {', '.join(AUGMENTS)}")
    common = {
        "interpolation": PRETRAINED_CFG.interpolation,
        "mean": PRETRAINED_CFG.mean,
        "std": PRETRAINED_CFG.std,
    }
    if not is_training or augment == "none":
        return create_transform(
            image_size,
            is_training=False,
            crop_pct=PRETRAINED_CFG.crop_pct,
            crop_mode=PRETRAINED_CFG.crop_mode,
            **common,
        )
    strong = augment == "strong"
    return create_transform(
        image_size,
        is_training=True,
        scale=TRAIN_SCALE,
        hflip=0.5,
        color_jitter=None,
        auto_augment=RAND_AUGMENT if strong else None,
        re_prob=RANDOM_ERASING_PROB if strong else 0.0,
        re_mode="pixel",
        **common,
    )


def map_box_to_eval_input(
    box: Box,
    width: int,
    height: int,
    image_size: int,
    *,
    bbox_crop: bool = False,
    bbox_margin: float = 0.1,
) -> tuple[float, float, float, float]:
    """Where a box of a ``width`` x ``height`` image lands in the evaluation input.

    Follows the deterministic geometry: the optional crop to the enlarged box
    (as :class:`cars.data.CarsDataset` does), resizing the shorter side to
    ``floor(image_size / crop_pct)``, and the centre crop to ``image_size``.
    The result is in the model input's pixels (x2, y2 exclusive), clipped to it.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if bbox_crop:
        cx1, cy1, cx2, cy2 = expand_box(box, width, height, bbox_margin)
        x1, y1, x2, y2 = x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1
        width, height = cx2 - cx1, cy2 - cy1
    short = math.floor(image_size / PRETRAINED_CFG.crop_pct)
    # torchvision's Resize(int): the shorter side becomes `short`, the longer is truncated.
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    sx, sy = new_w / width, new_h / height
    # torchvision's CenterCrop rounds the offsets.
    left = round((new_w - image_size) / 2.0)
    top = round((new_h - image_size) / 2.0)

    def clip(v: float) -> float:
        return min(max(v, 0.0), float(image_size))

    return clip(x1 * sx - left), clip(y1 * sy - top), clip(x2 * sx - left), clip(y2 * sy - top)
