"""The augmentation policies, and boxes mapped through the evaluation geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms

from cars.data import DataError, create_transform_for, expand_box, map_box_to_eval_input


def _photo(size: tuple[int, int] = (120, 80)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _steps(transform) -> list:
    return list(transform.transforms)


def test_eval_is_resize_and_centre_crop_with_xception_settings() -> None:
    transform = create_transform_for("none", 64, is_training=False)
    resize, crop = _steps(transform)[:2]
    assert isinstance(resize, transforms.Resize) and isinstance(crop, transforms.CenterCrop)
    assert resize.size == int(64 / 0.8975)  # timm's crop_pct for legacy_xception
    assert resize.interpolation == transforms.InterpolationMode.BICUBIC
    out = transform(_photo())
    assert out.shape == (3, 64, 64)
    assert torch.equal(out, transform(_photo()))
    white = transform(Image.new("RGB", (100, 100), "white"))
    black = transform(Image.new("RGB", (100, 100), "black"))
    assert torch.allclose(white, torch.ones(1)) and torch.allclose(black, -torch.ones(1))


@pytest.mark.parametrize("augment", ["none", "basic", "strong"])
def test_evaluation_ignores_the_policy(augment: str) -> None:
    transform = create_transform_for(augment, 64, is_training=False)
    assert torch.equal(transform(_photo()), transform(_photo()))


def test_basic_crops_and_flips_at_random() -> None:
    transform = create_transform_for("basic", 64, is_training=True)
    kinds = [type(step) for step in _steps(transform)]
    assert RandomResizedCropAndInterpolation in kinds
    assert transforms.RandomHorizontalFlip in kinds
    assert RandAugment not in kinds and RandomErasing not in kinds
    torch.manual_seed(0)
    outputs = [transform(_photo()) for _ in range(3)]
    assert outputs[0].shape == (3, 64, 64)
    assert not torch.equal(outputs[0], outputs[1])


def test_strong_adds_rand_augment_and_random_erasing() -> None:
    transform = create_transform_for("strong", 64, is_training=True)
    kinds = [type(step) for step in _steps(transform)]
    assert {RandomResizedCropAndInterpolation, RandAugment, RandomErasing} <= set(kinds)
    assert transform(_photo()).shape == (3, 64, 64)


def test_an_unknown_policy_is_named() -> None:
    with pytest.raises(DataError, match="augment='heavy'"):
        create_transform_for("heavy", 64, is_training=True)


@pytest.mark.parametrize(
    ("size", "box", "bbox_crop"),
    [
        ((200, 120), (50, 30, 150, 90), False),  # landscape
        ((90, 160), (10, 60, 70, 120), False),  # portrait
        ((200, 120), (20, 10, 120, 70), True),  # cropped to the enlarged box first
        ((240, 150), (0, 40, 100, 150), False),  # the box reaches the edges
    ],
)
def test_a_box_maps_to_where_it_lands_in_the_eval_input(
    size: tuple[int, int], box: tuple[int, int, int, int], bbox_crop: bool
) -> None:
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill="white")
    if bbox_crop:  # as CarsDataset does
        image = image.crop(expand_box(box, *size, 0.25))
    out = create_transform_for("none", 96, is_training=False)(image)[0].numpy()
    lit = out > 0  # brighter than mid-grey
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    mapped = map_box_to_eval_input(box, *size, 96, bbox_crop=bbox_crop, bbox_margin=0.25)
    assert np.abs(np.subtract(mapped, extent)).max() <= 1.0, (mapped, extent)
