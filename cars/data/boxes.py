"""Bounding boxes in the project's one convention, and the few operations on them."""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]

BBOX_CONVENTION = (
    "bbox_x1, bbox_y1, bbox_x2, bbox_y2 are in the stored image's pixels, 0-based, "
    "x1/y1 inclusive and x2/y2 exclusive (a PIL crop box: the box covers columns "
    "x1..x2-1 and rows y1..y2-1). Stanford Cars' 1-based inclusive corners "
    "(x1, y1, x2, y2) are stored as (x1-1, y1-1, x2, y2), scaled with the image. "
    "An unknown box is stored as null in all four columns: the image and its label are "
    "kept, and nothing that needs a box (--bbox-crop, the Grad-CAM measures) guesses one."
)


def clip_box(box: Box, width: int, height: int) -> Box:
    """The part of ``box`` inside a ``width`` x ``height`` image (it may have no area)."""
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0), width),
        min(max(y1, 0), height),
        min(max(x2, 0), width),
        min(max(y2, 0), height),
    )


def has_area(box: Box) -> bool:
    """Whether a box covers at least one pixel."""
    return box[2] > box[0] and box[3] > box[1]


def scale_box(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    """A box of an image resized by ``(sx, sy)`` into ``width`` x ``height``.

    Edges are rounded to the nearest pixel; a box never shrinks to nothing.
    """
    x1, y1 = min(round(box[0] * sx), width - 1), min(round(box[1] * sy), height - 1)
    x2, y2 = min(round(box[2] * sx), width), min(round(box[3] * sy), height)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def expand_box(box: Box, width: int, height: int, margin: float) -> Box:
    """A crop box: ``box`` enlarged by ``margin`` times its size on each side, clipped."""
    x1, y1, x2, y2 = box
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    return clip_box(
        (math.floor(x1 - dx), math.floor(y1 - dy), math.ceil(x2 + dx), math.ceil(y2 + dy)),
        width,
        height,
    )
