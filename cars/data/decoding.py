"""Encoded image bytes to a model input's uint8 tensor: decode, crop to the box, transform.

A JPEG much larger than the transform needs is decoded at 1/2, 1/4 or 1/8
scale (Pillow's ``draft``: libjpeg scales in the DCT, so the skipped pixels
cost nothing), never below what the transform's smallest crop needs
(``decode_scale``); the box is scaled by the same factor. A full-scale colour
JPEG is decoded by simplejpeg, a libjpeg-turbo binding that writes straight into
a NumPy array: the same pixels as Pillow's (the same library, the same accurate
DCT and smooth chroma upsampling) without Pillow's buffer and its copies
(``benchmarks/bench_data.py`` measures the decoders side by side). Anything
else (grayscale, CMYK, PNG) goes through Pillow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import simplejpeg
import torch
from PIL import Image

from cars.data.boxes import Box, expand_box
from cars.data.transforms import InputTransform

# libjpeg's DCT scaling only pays from a halving on.
MIN_DRAFT_REDUCTION = 2


def decode_rgb(data: bytes, scale: float = 1.0) -> tuple[torch.Tensor, float]:
    """Decode to a uint8 3 x H x W tensor, at no less than ``scale`` of the full size.

    Returns:
        The pixels and the scale they were decoded at (1, 1/2, 1/4 or 1/8).
    """
    with Image.open(io.BytesIO(data)) as image:
        return _decode_opened(image, data, scale)


def _decode_opened(image: Image.Image, data: bytes, scale: float) -> tuple[torch.Tensor, float]:
    width, height = image.size
    if image.format == "JPEG" and scale * MIN_DRAFT_REDUCTION <= 1.0:
        wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        drafted = image.draft("RGB", wanted)
        # draft reports the full image's extent in the reduced image's pixels.
        factor = 1.0 if drafted is None else drafted[1][2] / width
        if factor < 1.0:
            pixels = np.asarray(image.convert("RGB"))
            return torch.from_numpy(pixels.copy()).permute(2, 0, 1), factor
    if image.format == "JPEG" and image.mode == "RGB":
        return decode_jpeg_rgb(data), 1.0
    pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1), 1.0


def decode_jpeg_rgb(data: bytes) -> torch.Tensor:
    """A colour JPEG at full scale to a uint8 3 x H x W tensor, the pixels Pillow decodes."""
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
    # A view of the H x W x 3 array: the transforms read it as fast as a contiguous
    # copy (to_pil even skips its own), and the copy is not free.
    return torch.from_numpy(pixels).permute(2, 0, 1)


def decode_input(
    data: bytes,
    transform: InputTransform,
    box: Box | None = None,
    margin: float = 0.1,
) -> torch.Tensor:
    """Encoded bytes to ``transform``'s uint8 output, cropped first to ``box`` if given.

    Args:
        box: the car's box in the stored image's pixels; the image is cropped to it,
            enlarged by ``margin`` times its size on each side (``bbox_crop``).
    """
    # Opened once: the header gives the size, and the decoder is configured from it.
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        region = (0, 0, width, height) if box is None else expand_box(box, width, height, margin)
        scale = transform.decode_scale(region[2] - region[0], region[3] - region[1])
        pixels, factor = _decode_opened(image, data, scale)
    if box is not None:
        rows, cols = pixels.shape[1], pixels.shape[2]
        x1, y1 = math.floor(region[0] * factor), math.floor(region[1] * factor)
        x2 = min(cols, max(x1 + 1, math.ceil(region[2] * factor)))
        y2 = min(rows, max(y1 + 1, math.ceil(region[3] * factor)))
        pixels = pixels[:, y1:y2, x1:x2]
    return transform(pixels)
