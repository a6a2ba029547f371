"""The loader's decoders give Pillow's pixels, whatever the JPEG's subsampling or colour space."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cars.data import create_transform_for
from cars.data.decoding import MIN_DRAFT_REDUCTION, decode_input, decode_jpeg_rgb, decode_rgb


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients under noise: what chroma upsampling and the DCT both touch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        128 + 100 * np.sin(x / 17 + seed),
        128 + 100 * np.cos(y / 11),
        (x + y) * 255 / (width + height),
    ]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _encode(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _pillow_pixels(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


# Odd sizes leave partial chroma blocks at the right and bottom edges.
@pytest.mark.parametrize("size", [(600, 400), (333, 251)])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_a_full_scale_colour_jpeg_decodes_to_pillows_pixels(
    size: tuple[int, int], subsampling: str
) -> None:
    data = _encode(_photo(*size), subsampling=subsampling)
    expected = _pillow_pixels(data)
    assert expected.shape == (3, size[1], size[0])
    assert torch.equal(decode_jpeg_rgb(data), expected)
    pixels, factor = decode_rgb(data)  # the path the loader takes at full scale
    assert factor == 1.0
    assert torch.equal(pixels, expected)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_a_grayscale_or_cmyk_jpeg_decodes_to_pillows_rgb(mode: str) -> None:
    data = _encode(_photo(120, 90).convert(mode))
    pixels, factor = decode_rgb(data)
    assert factor == 1.0
    assert pixels.shape == (3, 90, 120)
    assert torch.equal(pixels, _pillow_pixels(data))


def test_the_model_input_of_a_jpeg_is_the_transform_of_pillows_pixels() -> None:
    data = _encode(_photo(400, 300))
    transform = create_transform_for("none", 224, is_training=False)
    # Too little to shrink for a reduced decode to pay: decoded at full scale.
    assert transform.decode_scale(400, 300) * MIN_DRAFT_REDUCTION > 1.0
    assert torch.equal(decode_input(data, transform), transform(_pillow_pixels(data)))
