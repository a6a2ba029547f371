"""Image transforms for training and evaluation: an image in, a uint8 C x H x W tensor out.

Policies: ``none`` (resize + centre crop, also every evaluation), ``basic``
(random resized crop + horizontal flip), ``strong`` (``basic`` + RandAugment +
random erasing), with the interpolation and crop_pct of timm's pretrained
``legacy_xception`` config. Horizontal flips are kept: facing left or right is
never what tells cars apart.

The CPU's share stops at uint8 pixels: the float conversion, the mean/std
normalisation and random erasing run on the device
(:mod:`cars.data.normalize`), as timm's prefetching loader does. Training crops
and resizes uint8 tensors with torchvision's antialiased bicubic (a fraction of
the cost of PIL's float path); the crop is drawn by timm's own
``RandomResizedCropAndInterpolation``, so the policy's statistics stay timm's.
Evaluation keeps PIL's bicubic (timm's eval transform exactly), and its geometry
is one torchvision ``transforms.v2`` pipeline that moves boxes
(``tv_tensors.BoundingBoxes``) as it moves pixels. Each transform also says how
far an image may be shrunk at decoding (``decode_scale``) without any crop being
upsampled more than at full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import timm
import torch
from PIL import Image, ImageOps
from timm.data import auto_augment
from timm.data.auto_augment import RandAugment, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation, str_to_pil_interp
from torchvision import tv_tensors
from torchvision.transforms import v2

from cars.config import AUGMENTS
from cars.data.boxes import Box, expand_box
from cars.data.errors import DataError

MODEL_NAME = "legacy_xception"
PRETRAINED_CFG = timm.get_pretrained_cfg(MODEL_NAME)
# ImageNet's default (0.08, 1) often cuts the car out of a photo of one car.
TRAIN_SCALE = (0.25, 1.0)
TRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)
HFLIP_PROB = 0.5
RAND_AUGMENT = "rand-m9-mstd0.5-inc1"
RANDOM_ERASING_PROB = 0.25
EVAL_CROP_MODES = ("center", "squash")

Image_ = Image.Image | torch.Tensor


def to_uint8_tensor(image: Image_) -> torch.Tensor:
    """A PIL image or a uint8 C x H x W tensor as a uint8 C x H x W tensor (RGB)."""
    if isinstance(image, torch.Tensor):
        return image
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def to_pil(image: Image_) -> Image.Image:
    """A uint8 C x H x W tensor (or a PIL image) as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def _interpolation(name: str) -> v2.InterpolationMode:
    return v2.InterpolationMode(name)


@dataclass(frozen=True)
class EvalTransform:
    """Resize (shorter side to ``floor(size / crop_pct)``, or both sides for ``squash``) and
    centre crop, on PIL's bicubic as timm's evaluation transform does."""

    image_size: int
    crop_pct: float = PRETRAINED_CFG.crop_pct
    crop_mode: str = PRETRAINED_CFG.crop_mode or "center"
    interpolation: str = PRETRAINED_CFG.interpolation

    def __post_init__(self) -> None:
        if self.crop_mode not in EVAL_CROP_MODES:
            raise DataError(
                f"crop_mode={self.crop_mode!r} is not supported: "
                f"one of {', '.join(EVAL_CROP_MODES)}"
            )

    @property
    def scale_size(self) -> int:
        """The side the resize aims at (timm's ``scale_size``)."""
        return math.floor(self.image_size / self.crop_pct)

    @cached_property
    def geometry(self) -> v2.Compose:
        """The one definition of the evaluation geometry, for pixels and boxes alike."""
        size = self.scale_size
        resize_to = [size, size] if self.crop_mode == "squash" else size
        return v2.Compose(
            [
                v2.Resize(resize_to, interpolation=_interpolation(self.interpolation)),
                v2.CenterCrop(self.image_size),
            ]
        )

    def decode_scale(self, width: int, height: int) -> float:
        """The smallest scale of a ``width`` x ``height`` image that the resize never enlarges."""
        if self.crop_mode == "squash":
            return min(1.0, max(self.scale_size / width, self.scale_size / height))
        return min(1.0, self.scale_size / min(width, height))

    def __call__(self, image: Image_) -> torch.Tensor:
        """The uint8 3 x ``image_size`` x ``image_size`` input of ``image``."""
        # PIL's bicubic, as timm's eval transform: scores stay those of the former path.
        return to_uint8_tensor(self.geometry(to_pil(image)))

    def map_box(
        self,
        box: tuple[float, float, float, float],
        width: int,
        height: int,
        region: Box | None = None,
    ) -> tuple[float, float, float, float]:
        """Where ``box`` of a ``width`` x ``height`` image lands in the input (x2, y2 exclusive).

        Args:
            region: the part of the image cut out before the transform (``bbox_crop``).
        """
        boxes = tv_tensors.BoundingBoxes(
            [list(box)], format="XYXY", canvas_size=(height, width), dtype=torch.float64
        )
        if region is not None:
            x1, y1, x2, y2 = region
            boxes = v2.functional.crop(boxes, top=y1, left=x1, height=y2 - y1, width=x2 - x1)
        # The transform clamps the box to the canvas, so a box past the edges stays inside.
        out = self.geometry(boxes)
        x1, y1, x2, y2 = (float(v) for v in out[0].tolist())
        return x1, y1, x2, y2


@dataclass(frozen=True)
class TrainTransform:
    """``basic`` (random resized crop + flip) or ``strong`` (+ RandAugment) on uint8 tensors.

    Random erasing, the rest of ``strong``, happens on the device
    (:func:`create_random_erasing`), as it works on normalised values.
    """

    image_size: int
    strong: bool = False
    scale: tuple[float, float] = TRAIN_SCALE
    ratio: tuple[float, float] = TRAIN_RATIO
    interpolation: str = PRETRAINED_CFG.interpolation
    rand_augment: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        augment = None
        if self.strong:
            hparams = {
                "translate_const": int(self.image_size * 0.45),
                "img_mean": tuple(min(255, round(255 * x)) for x in PRETRAINED_CFG.mean),
                "interpolation": str_to_pil_interp(self.interpolation),
            }
            augment = repair_posterize(rand_augment_transform(RAND_AUGMENT, hparams))
        object.__setattr__(self, "rand_augment", augment)

    def decode_scale(self, width: int, height: int) -> float:
        """The smallest scale at which the smallest possible crop still fills the input."""
        smallest = math.sqrt(self.scale[0] * width * height * min(self.ratio[0], 1 / self.ratio[1]))
        return min(1.0, self.image_size / min(smallest, width, height))

    def __call__(self, image: Image_) -> torch.Tensor:
        """A random uint8 3 x ``image_size`` x ``image_size`` view of ``image``."""
        pixels = to_uint8_tensor(image)
        # timm's own draw (Python's random), so crops are distributed as before.
        top, left, height, width = RandomResizedCropAndInterpolation.get_params(
            pixels, self.scale, self.ratio
        )
        pixels = v2.functional.resized_crop(
            pixels,
            top,
            left,
            height,
            width,
            [self.image_size, self.image_size],
            interpolation=_interpolation(self.interpolation),
            antialias=True,
        )
        if torch.rand(1) < HFLIP_PROB:  # as torchvision's RandomHorizontalFlip draws
            pixels = pixels.flip(-1)
        if self.rand_augment is not None:
            pixels = to_uint8_tensor(self.rand_augment(to_pil(pixels)))
        return pixels.contiguous()


InputTransform = EvalTransform | TrainTransform


def _posterize(image: Image.Image, bits_to_keep: int, **_: object) -> Image.Image:
    if bits_to_keep >= 8:
        return image
    if bits_to_keep < 1:  # what Pillow before 13 returned for 0 bits: black
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def repair_posterize(augment: RandAugment) -> RandAugment:
    """Let timm's increasing posterize keep 0 bits again.

    ``rand-...-inc1`` draws 0 bits at high magnitudes; Pillow 13 raises on that
    (older Pillow made the image black), which stopped ``strong`` training at random.
    """
    for op in augment.ops:
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = _posterize
    return augment


def create_transform_for(augment: str, image_size: int, *, is_training: bool) -> InputTransform:
    """The transform of an augmentation policy: an image in, a uint8 C x H x W tensor out.

    Evaluation (``is_training=False``) always uses the deterministic ``none`` geometry.
    """
    if augment not in AUGMENTS:
        raise DataError(f"augment={augment!r} is not valid: one of {', '.join(AUGMENTS)}")
    if not is_training or augment == "none":
        return EvalTransform(image_size)
    return TrainTransform(image_size, strong=augment == "strong")


def create_random_erasing(augment: str, device: torch.device | str) -> RandomErasing | None:
    """The device-side part of a training policy: ``strong``'s random erasing, else None.

    timm's ``RandomErasing`` as its ``create_transform`` configures it (pixel mode,
    one region, per image), applied to normalised batches on ``device``.
    """
    if augment != "strong":
        return None
    return RandomErasing(
        RANDOM_ERASING_PROB, mode="pixel", max_count=1, num_splits=0, device=str(device)
    )


def create_eval_transform(data_config: dict) -> EvalTransform:
    """The evaluation transform of a timm data config (``input_size``, ``crop_pct``, ...)."""
    return EvalTransform(
        int(data_config["input_size"][-1]),
        crop_pct=float(data_config.get("crop_pct") or PRETRAINED_CFG.crop_pct),
        crop_mode=data_config.get("crop_mode") or "center",
        interpolation=data_config.get("interpolation") or PRETRAINED_CFG.interpolation,
    )


def map_box_to_eval_input(
    box: Box,
    width: int,
    height: int,
    image_size: int,
    *,
    bbox_crop: bool = False,
    bbox_margin: float = 0.1,
    transform: EvalTransform | None = None,
) -> tuple[float, float, float, float]:
    """Where a box of a ``width`` x ``height`` image lands in the evaluation input.

    Follows the same geometry as the pixels: the optional crop to the enlarged box
    (as :class:`cars.data.CarsDataset` does), then :attr:`EvalTransform.geometry`.
    The result is in the model input's pixels (x2, y2 exclusive), clipped to it.
    """
    transform = transform or EvalTransform(image_size)
    region = expand_box(box, width, height, bbox_margin) if bbox_crop else None
    return transform.map_box(tuple(float(v) for v in box), width, height, region)
