"""Judging a copy's boxes against its images: the originals, resized, or cropped to the boxes.

Many public copies of Stanford Cars are not the originals: the images were
resized (thumbnails, 128 or 224 px copies) or cropped to their boxes, while the
devkit's boxes are still in the original pixels. What the copies look like:

- the original images: every box lies inside its image; a handful reach past
  the border by a pixel or so (:data:`BORDER_TOLERANCE`);
- a resized copy: most boxes reach outside their images, since a car fills most
  of its photo and any real downscale pushes the box's far corner out;
- a copy cropped to the boxes: each image is its box's size, within a pixel
  (:data:`CROP_TOLERANCE`: a crop may take ``x2`` as inclusive or exclusive).

Each official split is judged as a whole, since one box clipped into a resized
image is still wrong. When at least :data:`COPY_SHARE` of a split's images are
their box's size, it is a box-cropped copy: those boxes are the whole image, the
others unknown. Otherwise, when at least :data:`COPY_SHARE` of its boxes reach
outside their images by more than :data:`BORDER_TOLERANCE`, the images do not
match the boxes and every box of the split is unknown. Otherwise each box stands
on its own: inside its image it is kept, reaching outside it is clipped, and with
no area inside the image, or inverted, it is unknown. Unknown boxes are stored as
:data:`cars.data.boxes.BBOX_CONVENTION` says; the image and its label are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cars.data.boxes import Box, clip_box, has_area, scale_box

BORDER_TOLERANCE = 2  # pixels a box of an original image may reach past its border
CROP_TOLERANCE = 1  # pixels an image cropped to its box may differ from the box's size
COPY_SHARE = 0.5  # the share of a split's images that makes it a resized or cropped copy
UNKNOWN = "box_unknown"  # the action of an image whose box is stored as unknown


@dataclass(frozen=True)
class ImageBox:
    """An image's annotated box (original pixels, project convention) and its sizes."""

    source_file: str
    split: str
    box: Box
    original_size: tuple[int, int]
    stored_size: tuple[int, int]


@dataclass
class JudgedBoxes:
    """Each image's box in stored pixels (``None``: unknown), and what was found."""

    boxes: list[Box | None]
    # (source_file, kind, detail, action) per image whose box was clipped or dropped.
    issues: list[tuple[str, str, str, str]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # one line per recognised copy
    whole_image: int = 0  # boxes taken as the whole image (box-cropped copies)


def is_inverted(box: Box) -> bool:
    """Whether a box's corners are swapped or coincide (it covers nothing anywhere)."""
    return box[2] <= box[0] or box[3] <= box[1]


def is_box_sized(box: Box, width: int, height: int) -> bool:
    """Whether an image is its box's size, within :data:`CROP_TOLERANCE`."""
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    return abs(width - box_w) <= CROP_TOLERANCE and abs(height - box_h) <= CROP_TOLERANCE


def reaches_outside(box: Box, width: int, height: int) -> bool:
    """Whether a box reaches past its image's border by more than :data:`BORDER_TOLERANCE`."""
    x1, y1, x2, y2 = box
    tol = BORDER_TOLERANCE
    return x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol


def _to_stored(box: Box, image: ImageBox) -> Box:
    (width, height), (stored_w, stored_h) = image.original_size, image.stored_size
    return scale_box(box, stored_w / width, stored_h / height, stored_w, stored_h)


def _judge_one(image: ImageBox, judged: JudgedBoxes, index: int) -> None:
    """A box of a split that matches its images: kept, clipped, or unknown on its own."""
    box, (width, height) = image.box, image.original_size
    size = f"{width}x{height}"
    if is_inverted(box):
        detail = f"bounding box {box} is inverted (x2 <= x1 or y2 <= y1); box unknown"
        judged.issues.append((image.source_file, "inverted_bbox", detail, UNKNOWN))
        return
    clipped = clip_box(box, width, height)
    if not has_area(clipped):
        detail = f"bounding box {box} has no area inside the {size} image; box unknown"
        judged.issues.append((image.source_file, "empty_bbox", detail, UNKNOWN))
        return
    if clipped != box:
        detail = f"bounding box {box} reaches outside the {size} image; clipped"
        judged.issues.append((image.source_file, "bbox_clipped", detail, "repaired"))
    judged.boxes[index] = _to_stored(clipped, image)


def _judge_cropped(images: Sequence[ImageBox], rows: list[int], judged: JudgedBoxes) -> int:
    """A copy cropped to its boxes: a box-sized image's box is the whole image."""
    whole = 0
    for i in rows:
        image = images[i]
        width, height = image.original_size
        if not is_inverted(image.box) and is_box_sized(image.box, width, height):
            judged.boxes[i] = (0, 0, *image.stored_size)
            whole += 1
            continue
        detail = (
            f"the {width}x{height} image is not the size of its box {image.box}, in a "
            "copy cropped to its boxes; box unknown"
        )
        judged.issues.append((image.source_file, "bbox_mismatch", detail, UNKNOWN))
    return whole


def _judge_mismatched(
    images: Sequence[ImageBox], rows: list[int], judged: JudgedBoxes, outside: int
) -> None:
    for i in rows:
        image = images[i]
        width, height = image.original_size
        detail = (
            f"box {image.box} of the {width}x{height} image not used: {outside:,} of "
            f"{len(rows):,} {image.split} boxes reach outside their images (a resized copy?)"
        )
        judged.issues.append((image.source_file, "bbox_mismatch", detail, UNKNOWN))


def judge_boxes(images: Sequence[ImageBox]) -> JudgedBoxes:
    """Judge every image's box, each official split as a whole (see the module's text)."""
    judged = JudgedBoxes(boxes=[None] * len(images))
    splits = dict.fromkeys(image.split for image in images)
    for split in splits:
        rows = [i for i, image in enumerate(images) if image.split == split]
        total = len(rows)
        sized = {i for i in rows if is_box_sized(images[i].box, *images[i].original_size)}
        outside = [
            i
            for i in rows
            if i not in sized
            and not is_inverted(images[i].box)
            and reaches_outside(images[i].box, *images[i].original_size)
        ]
        if len(sized) >= COPY_SHARE * total:
            whole = _judge_cropped(images, rows, judged)
            judged.whole_image += whole
            line = (
                f"{len(sized):,} of {total:,} {split} images are exactly the size of their "
                "boxes: they look cropped to the boxes, so each such box is the whole image"
            )
            if whole < total:
                line += f"; the other {total - whole:,} boxes are unknown"
            judged.findings.append(line)
        elif len(outside) >= COPY_SHARE * total:
            finding = (
                f"{len(outside):,} of {total:,} {split} boxes reach outside their images: "
                "these images look resized or cropped from the originals, so their boxes "
                "are not used (stored as unknown)"
            )
            _judge_mismatched(images, rows, judged, len(outside))
            judged.findings.append(finding)
        else:
            for i in rows:
                _judge_one(images[i], judged, i)
    return judged
