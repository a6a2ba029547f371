"""Checking an image file and turning it into what a prepared set stores.

A valid RGB baseline JPEG that fits ``max_side`` is kept byte for byte; anything
else is decoded, converted to RGB, downscaled to fit and re-encoded. An image
that cannot be decoded completely (truncated, corrupt, not an image) is refused.
EXIF orientation is left alone: training decodes the stored pixels as they are,
which is how the boxes were drawn on them.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

JPEG_QUALITY = 95
PARALLEL_MIN_IMAGES = 500  # below this, starting processes costs more than it saves
IN_FLIGHT_PER_WORKER = 32  # images handed to each process ahead: bounds the bytes held


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
    digest: str = ""  # of the original bytes: two files with one digest are one image


def content_digest(data: bytes) -> str:
    """A digest of an image file's bytes, to find the same image stored twice."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
    digest = content_digest(data)
    repairs = []
    if image.format != "JPEG":
        repairs.append(("not_jpeg", f"{image.format} data, re-encoded as JPEG"))
    if image.mode != "RGB":
        repairs.append(("not_rgb", f"{image.mode} image, converted to RGB"))
    progressive = bool(image.info.get("progressive"))
    size = fit_size(width, height, max_side)
    resized = size != (width, height)
    if not (repairs or resized or progressive):
        return StoredImage(data, width, height, width, height, digest=digest)
    image = image.convert("RGB")
    if resized:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return StoredImage(
        buffer.getvalue(), *size, width, height, tuple(repairs), resized, True, digest
    )


def check_image(
    source: str | bytes, max_side: int
) -> tuple[StoredImage | None, list[tuple[str, str, str]]]:
    """Check one image, a file's path or the bytes of one: what to store, and the issues.

    Its box is judged later, with the whole copy's (:mod:`cars.data.box_fit`).

    Returns:
        ``(stored, issues)``; ``stored`` is ``None`` when the image is skipped.
        Each issue is ``(kind, detail, action)``.
    """
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            return None, [("missing_image", "the annotated image does not exist", "skipped")]
        except OSError as error:
            return None, [("unreadable_image", f"cannot be read: {error.strerror}", "skipped")]
    try:
        stored = create_stored_image(data, max_side)
    except UnreadableImageError as error:
        return None, [("unreadable_image", f"cannot be decoded: {error}", "skipped")]
    return stored, [(kind, detail, "repaired") for kind, detail in stored.repairs]


def _check_image_job(job: tuple[str | bytes, int]) -> tuple:
    return check_image(*job)


def check_images(
    sources: Iterable[str | bytes], max_side: int, *, total: int, workers: int | None
) -> Iterator[tuple]:
    """Run :func:`check_image` on each path or image's bytes, in order.

    Sources are consumed as results are taken, a bounded number ahead, so a copy
    whose images come as bytes (a Parquet export) is never held in memory whole.

    Args:
        total: how many sources there are (to choose the workers).
        workers: processes to use; by default several when there are many images.
    """
    jobs = ((source, max_side) for source in sources)
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if total >= PARALLEL_MIN_IMAGES else 1
    if workers <= 1:
        yield from map(_check_image_job, jobs)
        return
    executor = ProcessPoolExecutor(max_workers=workers)
    pending: deque[Future] = deque()
    try:
        for job in jobs:
            pending.append(executor.submit(_check_image_job, job))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(cancel_futures=True)
