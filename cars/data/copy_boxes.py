"""A copy's boxes: the annotated ones judged against their images, the absent ones said once.

The boxes a copy has are judged split by split (:func:`cars.data.box_fit.judge_boxes`:
resized and box-cropped copies recognised, unusable boxes unknown). A copy, or one
of its splits, that has no boxes at all (class folders without annotation files, a
Parquet export) keeps every image with an unknown box, and says so in one line,
not once per image: nothing is wrong with those images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cars.data.box_fit import ImageBox, judge_boxes
from cars.data.boxes import Box
from cars.data.problems import ProblemRecorder
from cars.data.rows import StagedRows

NO_BOX = "no_box_in_copy"  # the reason of an unknown box whose copy has none


@dataclass(frozen=True)
class CopyBoxes:
    """Each staged row's box in stored pixels (``None``: unknown), and what was found."""

    boxes: list[Box | None]
    findings: tuple[str, ...]
    whole_image: int  # boxes taken as the whole image (box-cropped copies)
    without_box: int  # kept rows of splits the copy has no boxes for


def _absent_findings(boxes_from: Mapping[str, str], splits: list[str], layout: str) -> list[str]:
    if not splits:
        return []
    if not boxes_from:
        return [
            f"no bounding boxes in this copy ({layout} layout): every box is stored as "
            "unknown, and the Grad-CAM measures cannot be computed"
        ]
    return [
        f"no bounding boxes for the {split} images (the copy has no box file for them): "
        "stored as unknown"
        + ("; the Grad-CAM measures cannot be computed" if split == "test" else "")
        for split in splits
    ]


def judge_copy_boxes(
    kept: StagedRows,
    dropped: np.ndarray,
    *,
    boxes_from: Mapping[str, str],
    layout: str,
    recorder: ProblemRecorder,
) -> CopyBoxes:
    """Judge the boxes of the staged rows that are not ``dropped``."""
    rows = [i for i, box in enumerate(kept.boxes) if box is not None and not dropped[i]]
    judged = judge_boxes(
        [
            ImageBox(
                source_file=kept.source_files[i],
                split=kept.splits[i],
                box=kept.boxes[i],  # type: ignore[arg-type]
                original_size=kept.original_sizes[i],
                stored_size=kept.stored_sizes[i],
            )
            for i in rows
        ]
    )
    split_of = {kept.source_files[i]: kept.splits[i] for i in rows}
    for source_file, kind, detail, action in judged.issues:
        recorder.add(source_file, kind, detail, action, split=split_of[source_file])
    boxes: list[Box | None] = [None] * len(kept.boxes)
    for i, box in zip(rows, judged.boxes, strict=True):
        boxes[i] = box
    in_use = [split for split, gone in zip(kept.splits, dropped, strict=True) if not gone]
    absent = [split for split in dict.fromkeys(in_use) if split not in boxes_from]
    return CopyBoxes(
        boxes=boxes,
        findings=(*_absent_findings(boxes_from, absent, layout), *judged.findings),
        whole_image=judged.whole_image,
        without_box=sum(split in absent for split in in_use),
    )
