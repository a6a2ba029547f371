"""Turning a copy of Stanford Cars into a prepared data set (see DESIGN.md, "Data").

The copy is found and read whatever its layout, and its classes put in the
devkit's order where they are Stanford Cars' (:mod:`cars.data.readers`). Every
image is checked here, so that training never meets a bad row: a missing,
unreadable or duplicate image is skipped (a file no record uses, or one with the
same bytes as another, too: :mod:`cars.data.content_duplicates`); a grayscale,
CMYK or non-JPEG image is converted. A box is auxiliary and never costs an image
its label: boxes are judged against their images (:mod:`cars.data.copy_boxes`),
a box reaching outside its image is clipped, and one that cannot be trusted, or
that the copy lacks, is stored as unknown. Each is counted in ``dataset.json``,
per split, with examples, and ``strict`` makes each an error. A file listed twice
keeps its first record. Boxes are stored in the convention of
:data:`cars.data.boxes.BBOX_CONVENTION`.

The set is written into a temporary folder next to ``out`` and renamed into
place when complete; an existing set is replaced only with ``force``, and only
then. ``out`` may also be a URI that ``pyarrow.fs`` opens: the set is built
locally and uploaded, ``dataset.json`` last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cars.data.box_fit import UNKNOWN
from cars.data.boxes import BBOX_CONVENTION
from cars.data.content_duplicates import (
    DUPLICATE_CONTENT,
    describe_duplicate,
    find_content_duplicates,
)
from cars.data.copy_boxes import NO_BOX, CopyBoxes, judge_copy_boxes
from cars.data.errors import DataError
from cars.data.hold_out import assign_splits, split_train_val
from cars.data.info import DATASET_FILE, SPLITS, DatasetInfo
from cars.data.layouts import Issue
from cars.data.prepare_result import PrepareResult
from cars.data.problems import ProblemRecorder
from cars.data.publishing import publish_folder
from cars.data.readers import OrderedCopy, read_source
from cars.data.rows import StagedRows, stage_rows, write_splits
from cars.paths import is_uri

__all__ = ["MAX_SIDE", "VAL_FRACTION", "PrepareResult", "prepare_dataset", "split_train_val"]

MAX_SIDE = 512
VAL_FRACTION = 0.1
_STAGING_FILE = "all-rows.parquet"


@dataclass(frozen=True)
class _Options:
    """How a set is prepared, as ``dataset.json`` records it."""

    max_side: int
    val_fraction: float
    seed: int
    name: str
    source_label: str
    generator: Mapping[str, Any] | None


def _check_arguments(source: str | Path, max_side: int, val_fraction: float) -> Path:
    if max_side < 32:
        raise DataError(f"max_side={max_side} is not valid: at least 32 pixels")
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction} is not valid: in [0, 1)")
    if is_uri(source):
        raise DataError(f"source {source} is a URI; copy the data set to a local folder first")
    return Path(source)


def _drop_listed_twice(frame: pd.DataFrame, recorder: ProblemRecorder) -> pd.DataFrame:
    repeated = frame.duplicated("source_file", keep="first")
    for index in np.flatnonzero(repeated.to_numpy()):
        row = frame.iloc[index]
        detail = f"listed again (record {index + 1}); the first record is kept"
        recorder.add(row.source_file, "duplicate", detail, "skipped", split=row.split)
    return frame[~repeated]


def _drop_content_duplicates(
    kept: StagedRows, class_names: tuple[str, ...], recorder: ProblemRecorder
) -> np.ndarray:
    """Which staged rows repeat another's image: a mask, each one recorded."""
    dropped = np.zeros(len(kept.labels), dtype=bool)
    for duplicate in find_content_duplicates(kept.digests, kept.splits):
        detail = describe_duplicate(duplicate, kept.source_files, kept.labels, class_names)
        split = kept.splits[duplicate.row]
        recorder.add(kept.source_files[duplicate.row], DUPLICATE_CONTENT, detail, "skipped", split)
        dropped[duplicate.row] = True
    return dropped


def _record_box_issues(
    issues: Sequence[Issue], kept: StagedRows, dropped: np.ndarray, recorder: ProblemRecorder
) -> None:
    """Record why a kept image has no box; a skipped image's box is no one's concern."""
    in_set = {name for name, gone in zip(kept.source_files, dropped, strict=True) if not gone}
    for issue in issues:
        if issue.action != "skipped" and issue.source_file in in_set:
            recorder.add(issue.source_file, issue.kind, issue.detail, issue.action, issue.split)


def _count_classes(labels: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Images per class; unknown labels (-1) are not counted."""
    return tuple(int(n) for n in np.bincount(labels[labels >= 0], minlength=num_classes))


def _build_info(
    source: OrderedCopy,
    kept: StagedRows,
    destinations: np.ndarray,
    boxes: CopyBoxes,
    *,
    recorder: ProblemRecorder,
    options: _Options,
) -> DatasetInfo:
    copy, labels = source.copy, np.array(kept.labels, dtype=np.int64)
    unknown = np.array([box is None for box in boxes.boxes], dtype=bool)
    reasons = recorder.counts(UNKNOWN) | ({NO_BOX: boxes.without_box} if boxes.without_box else {})
    return DatasetInfo(
        name=options.name,
        layout=copy.layout,
        source=options.source_label,
        class_names=source.class_names,
        counts={split: int((destinations == split).sum()) for split in SPLITS},
        class_counts={
            split: _count_classes(labels[destinations == split], len(source.class_names))
            for split in SPLITS
        },
        unlabelled_test=int(((destinations == "test") & (labels < 0)).sum()),
        max_side=options.max_side,
        val_fraction=options.val_fraction,
        seed=options.seed,
        bbox_convention=BBOX_CONVENTION,
        skipped=recorder.counts("skipped"),
        repaired=recorder.counts("repaired"),
        unknown_boxes={split: int((unknown & (destinations == split)).sum()) for split in SPLITS},
        unknown_box_reasons=reasons,
        whole_image_boxes=boxes.whole_image,
        box_findings=boxes.findings,
        resized=kept.resized,
        reencoded=kept.reencoded,
        problems=tuple(recorder.examples()),
        generator=dict(options.generator) if options.generator else None,
        found_at=copy.found_at,
        class_names_from=copy.names_from,
        class_order=source.order.order,
        class_note=source.order.note,
        boxes_from=dict(copy.boxes_from),
        has_boxes=bool(copy.boxes_from),
        images_found=dict(copy.found),
        skipped_by_split=recorder.counts_by_split("skipped"),
        notes=copy.notes,
    )


def _write_set(
    source: OrderedCopy,
    folder: Path,
    recorder: ProblemRecorder,
    options: _Options,
    *,
    workers: int | None,
    progress: bool,
) -> DatasetInfo:
    """Write the set's tables and ``dataset.json`` into ``folder``."""
    staging_file = folder / _STAGING_FILE
    frame = _drop_listed_twice(source.records, recorder)
    kept = stage_rows(
        source.copy.images,
        frame,
        staging_file,
        max_side=options.max_side,
        recorder=recorder,
        workers=workers,
        progress=progress,
        name=options.name,
    )
    dropped = _drop_content_duplicates(kept, source.class_names, recorder)
    _record_box_issues(source.copy.issues, kept, dropped, recorder)
    boxes = judge_copy_boxes(
        kept,
        dropped,
        boxes_from=source.copy.boxes_from,
        layout=source.copy.layout,
        recorder=recorder,
    )
    destinations = assign_splits(
        kept.splits,
        kept.labels,
        kept.source_files,
        dropped,
        val_fraction=options.val_fraction,
        seed=options.seed,
    )
    write_splits(staging_file, folder, destinations, boxes.boxes)
    staging_file.unlink()
    info = _build_info(source, kept, destinations, boxes, recorder=recorder, options=options)
    (folder / DATASET_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return info


def prepare_dataset(
    source: str | Path,
    out: str | Path,
    *,
    max_side: int = MAX_SIDE,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    strict: bool = False,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    name: str | None = None,
    source_label: str | None = None,
    generator: Mapping[str, Any] | None = None,
    layout: str | None = None,
    test_labels: str | Path | None = None,
) -> PrepareResult:
    """Prepare the copy of Stanford Cars (or another class-folder set) in ``source`` at ``out``.

    Args:
        source: a local folder holding a copy in one of the layouts of
            :mod:`cars.data.layouts`, at its top or a few folders below.
        out: a local folder or a URI; it must not exist, be empty, or (with
            ``force``) hold a prepared set, which is replaced once the new one is complete.
        max_side: the longest side of a stored image; larger images are downscaled.
        val_fraction: the share of each class's official training images held out as ``val``.
        seed: the seed of the hold-out.
        strict: make every skipped or repaired image an error.
        workers: processes that check images; by default several for large sets.
        name: the set's name; by default the source folder's name.
        source_label: what ``dataset.json`` names as the source; by default its path.
        generator: how a generated source was made, kept in ``dataset.json``.
        layout: read this layout (a name of ``cars.data.LAYOUTS``), not the one detected.
        test_labels: the devkit's ``cars_test_annos_withlabels.mat``, where it is
            not beside the copy.

    Raises:
        DataError: the source is missing or malformed, ``out`` cannot be written,
            or (``strict``) an image would be skipped or repaired.
    """
    path = _check_arguments(source, max_side, val_fraction)
    copy = read_source(path, layout=layout, test_labels=test_labels)
    options = _Options(
        max_side=max_side,
        val_fraction=val_fraction,
        seed=seed,
        name=name or path.resolve().name,
        source_label=source_label or str(path.resolve()),
        generator=generator,
    )
    recorder = ProblemRecorder(strict)
    for issue in copy.copy.issues:
        if issue.action == "skipped":  # box issues wait until their image is kept
            recorder.add(issue.source_file, issue.kind, issue.detail, issue.action, issue.split)
    with publish_folder(str(out), force=force) as folder:
        info = _write_set(copy, folder, recorder, options, workers=workers, progress=progress)
    return PrepareResult(str(out), info, tuple(recorder.problems))
