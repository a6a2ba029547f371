"""Checking an image file and turning it into what a prepared set stores.

A valid RGB baseline JPEG that fits ``max_side`` is kept byte for byte; anything
else is decoded, converted to RGB, downscaled to fit and re-encoded. An image
that cannot be decoded completely (truncated, corrupt, not an image) is refused.
EXIF orientation is left alone: training decodes the stored pixels as they are,
which is how the boxes were drawn on them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

JPEG_QUALITY = 95
PARALLEL_MIN_IMAGES = 500  # below this, starting processes costs more than it saves


class UnreadableImageError(Exception):
    """An image that cannot be decoded completely."""


@dataclass(frozen=True)
class StoredImage:
    """An image as a prepared set stores it, and what was done to it."""

    data: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    # (kind, detail) for each repair: "not_rgb" or "not_jpeg".
    repairs: tuple[tuple[str, str], ...] = field(default=())
    resized: bool = False
    reencoded: bool = False  # the stored bytes are not the original file's


def _decode(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decodes everything, so a truncated file fails here
    except UnidentifiedImageError as error:
        raise UnreadableImageError("not an image format Pillow can read") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(str(error) or type(error).__name__) from error
    return image


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size of an image shrunk to fit ``max_side`` on its longer side (never enlarged)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def create_stored_image(data: bytes, max_side: int) -> StoredImage:
    """Check an image file's bytes and return what a prepared set stores for it.

    Raises:
        UnreadableImageError: the bytes are not a complete, decodable image.
    """
    image = _decode(data)
    width, height = image.size
    repairs = []
    if image.format != "JPEG":
        repairs.append(("not_jpeg", f"{image.format} data, re-encoded as JPEG"))
    if image.mode != "RGB":
        repairs.append(("not_rgb", f"{image.mode} image, converted to RGB"))
    progressive = bool(image.info.get("progressive"))
    size = fit_size(width, height, max_side)
    resized = size != (width, height)
    if not (repairs or resized or progressive):
        return StoredImage(data, width, height, width, height)
    image = image.convert("RGB")
    if resized:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return StoredImage(buffer.getvalue(), *size, width, height, tuple(repairs), resized, True)


def check_image(path: str, max_side: int) -> tuple[StoredImage | None, list[tuple[str, str, str]]]:
    """Check one image file: what to store, and the issues.

    Its box is judged later, with the whole copy's (:mod:`cars.data.box_fit`).

    Returns:
        ``(stored, issues)``; ``stored`` is ``None`` when the image is skipped.
        Each issue is ``(kind, detail, action)``.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, [("missing_image", "the annotated image does not exist", "skipped")]
    except OSError as error:
        return None, [("unreadable_image", f"cannot be read: {error.strerror}", "skipped")]
    try:
        stored = create_stored_image(data, max_side)
    except UnreadableImageError as error:
        return None, [("unreadable_image", f"cannot be decoded: {error}", "skipped")]
    return stored, [(kind, detail, "repaired") for kind, detail in stored.repairs]


def _check_image_job(job: tuple[str, int]) -> tuple:
    return check_image(*job)


def check_images(jobs: list[tuple[str, int]], workers: int | None) -> Iterator[tuple]:
    """Run :func:`check_image` on each ``(path, max_side)``, in order.

    Args:
        workers: processes to use; by default several when there are many images.
    """
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if len(jobs) >= PARALLEL_MIN_IMAGES else 1
    if workers <= 1:
        yield from map(_check_image_job, jobs)
        return
    executor = ProcessPoolExecutor(max_workers=workers)
    try:
        yield from executor.map(_check_image_job, jobs, chunksize=16)
    finally:
        executor.shutdown(cancel_futures=True)
