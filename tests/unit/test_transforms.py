"""The augmentation policies, boxes mapped through the evaluation geometry, and the
uint8 path against the former float one (timm's ``create_transform``)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from timm.data import create_transform
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from torchvision.transforms import v2

from cars.data import (
    DataError,
    create_random_erasing,
    create_transform_for,
    expand_box,
    map_box_to_eval_input,
    normalize_on_device,
)
from cars.data.decoding import decode_input, decode_rgb
from cars.data.transforms import (
    PRETRAINED_CFG,
    EvalTransform,
    TrainTransform,
    repair_posterize,
)

MEAN, STD = PRETRAINED_CFG.mean, PRETRAINED_CFG.std


def _photo(size: tuple[int, int] = (120, 80)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _former_transform(augment: str, image_size: int, *, is_training: bool):
    """The float path these transforms replace: timm's create_transform, normalising on the CPU."""
    common = {"interpolation": "bicubic", "mean": MEAN, "std": STD}
    if not is_training:
        return create_transform(
            image_size, is_training=False, crop_pct=PRETRAINED_CFG.crop_pct, **common
        )
    strong = augment == "strong"
    transform = create_transform(
        image_size,
        is_training=True,
        scale=(0.25, 1.0),
        hflip=0.5,
        color_jitter=None,
        auto_augment="rand-m9-mstd0.5-inc1" if strong else None,
        re_prob=0.25 if strong else 0.0,
        re_mode="pixel",
        **common,
    )
    for step in transform.transforms:  # the same Pillow 13 repair as the product's
        if isinstance(step, RandAugment):
            repair_posterize(step)
    return transform


def test_eval_is_resize_and_centre_crop_with_xception_settings() -> None:
    transform = create_transform_for("none", 64, is_training=False)
    resize, crop = transform.geometry.transforms
    assert isinstance(resize, v2.Resize) and isinstance(crop, v2.CenterCrop)
    assert resize.size == [int(64 / 0.8975)]  # timm's crop_pct for legacy_xception
    assert resize.interpolation == v2.InterpolationMode.BICUBIC
    out = transform(_photo())
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert torch.equal(out, transform(_photo()))
    white = transform(Image.new("RGB", (100, 100), "white"))
    black = transform(Image.new("RGB", (100, 100), "black"))
    assert bool((white == 255).all()) and bool((black == 0).all())


@pytest.mark.parametrize("augment", ["none", "basic", "strong"])
def test_evaluation_ignores_the_policy(augment: str) -> None:
    transform = create_transform_for(augment, 64, is_training=False)
    assert torch.equal(transform(_photo()), transform(_photo()))


def test_basic_crops_and_flips_at_random() -> None:
    transform = create_transform_for("basic", 64, is_training=True)
    assert isinstance(transform, TrainTransform) and transform.rand_augment is None
    assert transform.scale == (0.25, 1.0)
    assert create_random_erasing("basic", "cpu") is None
    torch.manual_seed(0)
    outputs = [transform(_photo()) for _ in range(3)]
    assert outputs[0].shape == (3, 64, 64) and outputs[0].dtype == torch.uint8
    assert not torch.equal(outputs[0], outputs[1])


def test_strong_adds_rand_augment_and_random_erasing_on_the_device() -> None:
    transform = create_transform_for("strong", 64, is_training=True)
    assert transform.rand_augment is not None
    erasing = create_random_erasing("strong", "cpu")
    assert isinstance(erasing, RandomErasing) and erasing.probability == 0.25
    assert erasing.mode == "pixel" or erasing.per_pixel
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
    lit = out >= 128  # brighter than mid-grey
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    mapped = map_box_to_eval_input(box, *size, 96, bbox_crop=bbox_crop, bbox_margin=0.25)
    assert np.abs(np.subtract(mapped, extent)).max() <= 1.0, (mapped, extent)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("bbox_crop", [False, True])
def test_a_large_jpeg_is_decoded_at_reduced_scale_and_its_box_still_lands_right(
    bbox_crop: bool,
) -> None:
    size, box = (800, 600), (200, 150, 520, 430)
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill="white")
    data = _jpeg(image)
    transform = EvalTransform(64)
    region = expand_box(box, *size, 0.25) if bbox_crop else (0, 0, *size)
    wanted = transform.decode_scale(region[2] - region[0], region[3] - region[1])
    _, factor = decode_rgb(data, wanted)
    assert factor < 1.0 and factor >= wanted  # reduced, never below what the resize needs
    short = min(region[2] - region[0], region[3] - region[1]) * factor
    assert short >= transform.scale_size  # so the resize still shrinks: nothing upsampled
    out = decode_input(data, transform, box if bbox_crop else None, 0.25)[0].numpy()
    lit = out >= 128
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    mapped = map_box_to_eval_input(box, *size, 64, bbox_crop=bbox_crop, bbox_margin=0.25)
    assert np.abs(np.subtract(mapped, extent)).max() <= 1.0, (mapped, extent)


def test_training_decodes_at_reduced_scale_only_when_every_crop_still_fills_the_input() -> None:
    transform = TrainTransform(299)
    assert transform.decode_scale(600, 400) == 1.0  # Stanford Cars' size at 299 px: full
    small = TrainTransform(64)
    scale = small.decode_scale(800, 600)
    smallest_crop = (0.25 * 0.75 * 800 * 600) ** 0.5  # scale 0.25, ratio 3/4
    assert scale < 0.5 and smallest_crop * scale >= 64 - 1e-9


def test_the_eval_input_normalised_on_the_device_equals_the_former_path() -> None:
    photo = _photo((130, 90))
    former = _former_transform("none", 64, is_training=False)(photo)
    pixels = create_transform_for("none", 64, is_training=False)(photo)
    new = normalize_on_device(pixels[None], "cpu", mean=MEAN, std=STD)[0]
    assert new.dtype == torch.float32
    assert torch.allclose(new, former, atol=1e-6)  # PIL's bicubic both ways: the same pixels
    data = _jpeg(photo)
    decoded = decode_input(data, EvalTransform(64))
    with Image.open(io.BytesIO(data)) as image:
        reference = _former_transform("none", 64, is_training=False)(image.convert("RGB"))
    normalised = normalize_on_device(decoded[None], "cpu", mean=MEAN, std=STD)[0]
    # torchvision's libjpeg-turbo decode against Pillow's: one uint8 level at most.
    assert (normalised - reference).abs().max() <= 1 / 255 / 0.5 + 1e-6


def _augmented(transform, images: list[Image.Image], samples: int, *, erase: bool) -> torch.Tensor:
    """``samples`` augmented views of each image, as normalised floats (N x 3 x H x W)."""
    erasing = create_random_erasing("strong", "cpu") if erase else None
    views = []
    for image in images:
        for _ in range(samples):
            out = transform(image)
            if out.dtype == torch.uint8:
                out = normalize_on_device(out[None], "cpu", mean=MEAN, std=STD, erasing=erasing)[0]
            views.append(out)
    return torch.stack(views)


def _car_photos() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    photos = []
    for i in range(3):
        y, x = np.mgrid[0:150, 0:220]
        base = np.stack([x * (1 + i), y * 2, (x + y) // 2], axis=-1) % 256
        image = Image.fromarray((base + rng.normal(0, 12, base.shape)).clip(0, 255).astype("uint8"))
        ImageDraw.Draw(image).ellipse([40 + 10 * i, 50, 170, 120], fill=(200, 30 * i, 40))
        photos.append(image)
    return photos


# (policy, mean, std, histogram distance) tolerances. RandAugment's draws (invert,
# solarize, ...) move the statistics of 360 views more: the former path against itself
# under two seeds differs by up to 0.08 in a channel's mean.
TOLERANCES = [("basic", 0.03, 0.03, 0.05), ("strong", 0.12, 0.05, 0.10)]


@pytest.mark.parametrize(("augment", "mean_tol", "std_tol", "hist_tol"), TOLERANCES)
def test_the_uint8_augmentation_has_the_former_statistics(
    augment: str, mean_tol: float, std_tol: float, hist_tol: float
) -> None:
    """Per-channel mean and std (normalised units, range 2) and the total-variation distance
    of 32-bin histograms, over 3 images x 120 views at 64 px, within TOLERANCES."""
    photos, samples = _car_photos(), 120
    random.seed(0)
    torch.manual_seed(0)
    former = _augmented(
        _former_transform(augment, 64, is_training=True), photos, samples, erase=False
    )
    random.seed(1)
    torch.manual_seed(1)
    new = _augmented(
        create_transform_for(augment, 64, is_training=True),
        photos,
        samples,
        erase=augment == "strong",
    )
    assert former.shape == new.shape
    for channel in range(3):
        a, b = former[:, channel].flatten(), new[:, channel].flatten()
        assert abs(float(a.mean() - b.mean())) < mean_tol, (channel, a.mean(), b.mean())
        assert abs(float(a.std() - b.std())) < std_tol, (channel, a.std(), b.std())
        bins = torch.linspace(-1, 1, 33)
        ha = torch.histogram(a.clamp(-1, 1), bins).hist / a.numel()
        hb = torch.histogram(b.clamp(-1, 1), bins).hist / b.numel()
        assert 0.5 * float((ha - hb).abs().sum()) < hist_tol, channel


def test_strong_survives_the_posterize_that_keeps_no_bits() -> None:
    transform = create_transform_for("strong", 32, is_training=True)
    posterize = [op for op in transform.rand_augment.ops if op.name == "PosterizeIncreasing"]
    assert posterize
    black = posterize[0].aug_fn(_photo(), 0)
    assert np.asarray(black).max() == 0
    kept = posterize[0].aug_fn(_photo(), 4)
    assert np.asarray(kept).max() > 0 and np.all(np.asarray(kept) % 16 == 0)
