"""Turning a Stanford Cars folder into a prepared data set (see DESIGN.md, "Data").

Every image is checked here, so that training never meets a bad row: a missing,
unreadable or duplicate image is skipped; a grayscale, CMYK or non-JPEG image is
converted. A box is auxiliary and never costs an image its label: boxes are
judged against their images (:mod:`cars.data.box_fit`, which recognises resized
and box-cropped copies), a box reaching outside its image is clipped, and one
that cannot be trusted is stored as unknown. Each is counted in ``dataset.json``
with examples, and ``strict`` makes each an error. A file listed twice keeps its
first record. Boxes are stored in the convention of
:data:`cars.data.boxes.BBOX_CONVENTION`.

The set is written into a temporary folder next to ``out`` and renamed into
place when complete; an existing set is replaced only with ``force``, and only
then. ``out`` may also be a URI that ``pyarrow.fs`` opens: the set is built
locally and uploaded, ``dataset.json`` last.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cars.data.box_fit import UNKNOWN, ImageBox, JudgedBoxes, judge_boxes
from cars.data.boxes import BBOX_CONVENTION, Box
from cars.data.errors import DataError
from cars.data.images import check_images
from cars.data.info import DATASET_FILE, SPLITS, DatasetInfo, split_file
from cars.data.problems import Problem, ProblemRecorder
from cars.data.publishing import publish_folder
from cars.data.readers import BBOX_FIELDS, detect_layout, read_annotations, read_class_names
from cars.paths import is_uri

MAX_SIDE = 512
VAL_FRACTION = 0.1
_BATCH_ROWS = 256
_STAGING_FILE = "all-rows.parquet"

SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("label", pa.int32()),
        *((name, pa.int32()) for name in BBOX_FIELDS),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source_file", pa.string()),
    ]
)
# JPEG bytes do not compress; the small columns do.
_COMPRESSION = {name: "none" if name == "image" else "zstd" for name in SCHEMA.names}


@dataclass(frozen=True)
class PrepareResult:
    """Where a prepared set went and what it holds (``info`` is its ``dataset.json``)."""

    out: str
    info: DatasetInfo
    problems: tuple[Problem, ...]

    def summary(self) -> str:
        """A few lines for a person: counts, what was skipped or repaired, examples."""
        info = self.info
        counts = ", ".join(f"{split} {info.counts[split]}" for split in SPLITS)
        if info.has_test_labels:
            test = "test labels known"
        else:
            test = f"{info.unlabelled_test} test images without labels: no test score"
        lines = [
            f"prepared data set {info.name!r} ({info.layout} layout, {info.num_classes} classes)",
            f"  images: {counts} ({test})",
        ]
        lines += [f"  {finding}" for finding in info.box_findings]
        unknown = sum(info.unknown_boxes.values())
        if unknown:
            each = ", ".join(f"{split} {n}" for split, n in info.unknown_boxes.items())
            why = ", ".join(f"{kind} {n}" for kind, n in sorted(info.unknown_box_reasons.items()))
            lines.append(
                f"  boxes unknown for {unknown} images ({each}; {why}): "
                "images and labels kept, box stored as null"
            )
        if info.whole_image_boxes:
            lines.append(f"  boxes taken as the whole image: {info.whole_image_boxes}")
        for action, kinds in (("skipped", info.skipped), ("repaired", info.repaired)):
            if kinds:
                each = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
                lines.append(f"  {action} {sum(kinds.values())}: {each}")
        lines.append(f"  re-encoded {info.reencoded} images ({info.resized} downscaled)")
        lines += [f"  {p.action}: {p.source_file}: {p.detail}" for p in self.problems[:5]]
        return "\n".join(lines)


def _hold_out_rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def split_train_val(
    labels: np.ndarray, val_fraction: float, seed: int, keys: Sequence[str] | None = None
) -> np.ndarray:
    """A stratified hold-out: a boolean mask of the rows that go to ``val``.

    Each class gives ``round(n * val_fraction)`` images, at least one when the
    fraction is above 0 and the class has two or more, and always keeps one for
    training. Within a class, images are ranked by a hash of the seed and their
    key (the source file; by default the row's place in its class), so one
    class's hold-out does not change when an image of another class is skipped
    or added.
    """
    is_val = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n = len(rows)
        take = int(np.floor(n * val_fraction + 0.5))
        take = min(max(take, 1 if val_fraction > 0 else 0), n - 1)
        names = [keys[r] for r in rows] if keys is not None else [str(i) for i in range(n)]
        ranked = sorted(range(n), key=lambda i: _hold_out_rank(seed, names[i]))
        is_val[rows[ranked[:take]]] = True
    return is_val


@dataclass
class _Rows:
    """What the staging pass learnt of the kept rows, in order."""

    labels: list[int]
    splits: list[str]
    source_files: list[str]
    images: list[ImageBox]
    reencoded: int = 0
    resized: int = 0


def _write_rows(
    source: Path,
    frame: pd.DataFrame,
    staging_file: Path,
    *,
    max_side: int,
    recorder: ProblemRecorder,
    workers: int | None,
    progress: bool,
    name: str,
) -> _Rows:
    """Check every image and write the kept rows, in order, to one staging file.

    The staged boxes are null: they are judged once every image's size is known.
    """
    boxes = frame[list(BBOX_FIELDS)].to_numpy().tolist()
    jobs = [(str(source / f), max_side) for f in frame.source_file]
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    kept = _Rows([], [], [], [])
    results = check_images(jobs, workers)
    bar = tqdm(
        results,
        total=len(jobs),
        desc=f"preparing {name}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        mininterval=1.0,
    )
    with (
        closing(results),
        pq.ParquetWriter(staging_file, SCHEMA, compression=_COMPRESSION) as writer,
    ):
        rows = zip(frame.itertuples(index=False), boxes, bar, strict=True)
        for row, box, (stored, issues) in rows:
            for issue in issues:
                recorder.add(row.source_file, *issue)
            if stored is None:
                continue
            kept.reencoded += stored.reencoded
            kept.resized += stored.resized
            kept.labels.append(row.label)
            kept.splits.append(row.split)
            kept.source_files.append(row.source_file)
            kept.images.append(
                ImageBox(
                    source_file=row.source_file,
                    split=row.split,
                    box=tuple(int(v) for v in box),
                    original_size=(stored.original_width, stored.original_height),
                    stored_size=(stored.width, stored.height),
                )
            )
            values = (stored.data, row.label, *[None] * 4, stored.width, stored.height)
            for column, value in zip(SCHEMA.names, (*values, row.source_file), strict=True):
                columns[column].append(value)
            if len(columns["image"]) >= _BATCH_ROWS:
                writer.write_table(pa.table(columns, schema=SCHEMA))
                columns = {column: [] for column in SCHEMA.names}
        writer.write_table(pa.table(columns, schema=SCHEMA))
    return kept


def _box_columns(boxes: Sequence[Box | None]) -> list[pa.Array]:
    """The four box columns, null where a box is unknown."""
    return [
        pa.array([None if box is None else box[k] for box in boxes], type=pa.int32())
        for k in range(4)
    ]


def _write_splits(
    staging_file: Path, folder: Path, destinations: np.ndarray, boxes: Sequence[Box | None]
) -> None:
    """Route the staged rows, in order, with their judged boxes, to one table per split."""
    writers = {
        split: pq.ParquetWriter(folder / split_file(split), SCHEMA, compression=_COMPRESSION)
        for split in SPLITS
    }
    try:
        start = 0
        for staged in pq.ParquetFile(staging_file).iter_batches(batch_size=_BATCH_ROWS):
            where = destinations[start : start + staged.num_rows]
            box_columns = _box_columns(boxes[start : start + staged.num_rows])
            start += staged.num_rows
            batch = staged
            for name, column in zip(BBOX_FIELDS, box_columns, strict=True):
                batch = batch.set_column(batch.schema.get_field_index(name), name, column)
            for split, writer in writers.items():
                if (where == split).any():
                    writer.write_batch(batch.filter(pa.array(where == split)))
    finally:
        for writer in writers.values():
            writer.close()


def _count_classes(labels: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Images per class; unknown labels (-1) are not counted."""
    return tuple(int(n) for n in np.bincount(labels[labels >= 0], minlength=num_classes))


def _count_unknown_boxes(judged: JudgedBoxes, destinations: np.ndarray) -> dict[str, int]:
    """Images whose box is unknown, per split."""
    unknown = np.array([box is None for box in judged.boxes], dtype=bool)
    return {split: int((unknown & (destinations == split)).sum()) for split in SPLITS}


def _drop_duplicates(frame: pd.DataFrame, recorder: ProblemRecorder) -> pd.DataFrame:
    repeated = frame.duplicated("source_file", keep="first")
    for index in np.flatnonzero(repeated.to_numpy()):
        source_file = frame.source_file.iloc[index]
        detail = f"listed again (record {index + 1}); the first record is kept"
        recorder.add(source_file, "duplicate", detail, "skipped")
    return frame[~repeated]


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
) -> PrepareResult:
    """Prepare the Stanford Cars folder ``source`` as a data set at ``out``.

    Args:
        source: a local folder in the devkit or all-in-one layout.
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

    Raises:
        DataError: the source is missing or malformed, ``out`` cannot be written,
            or (``strict``) an image would be skipped or repaired.
    """
    if max_side < 32:
        raise DataError(f"max_side={max_side} is not valid: at least 32 pixels")
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction} is not valid: in [0, 1)")
    if is_uri(source):
        raise DataError(f"source {source} is a URI; copy the data set to a local folder first")
    source = Path(source)
    layout = detect_layout(source)
    class_names = read_class_names(source)
    frame = read_annotations(source)
    out = str(out)
    name = name or source.resolve().name
    recorder = ProblemRecorder(strict)
    frame = _drop_duplicates(frame, recorder)
    with publish_folder(out, force=force) as folder:
        staging_file = folder / _STAGING_FILE
        kept = _write_rows(
            source,
            frame,
            staging_file,
            max_side=max_side,
            recorder=recorder,
            workers=workers,
            progress=progress,
            name=name,
        )
        judged = judge_boxes(kept.images)
        for issue in judged.issues:
            recorder.add(*issue)
        labels, splits = np.array(kept.labels, dtype=np.int64), np.array(kept.splits)
        destinations = splits.astype(object)
        train_rows = np.flatnonzero(splits == "train")
        keys = [kept.source_files[r] for r in train_rows]
        is_val = split_train_val(labels[train_rows], val_fraction, seed, keys)
        destinations[train_rows[is_val]] = "val"
        _write_splits(staging_file, folder, destinations, judged.boxes)
        staging_file.unlink()
        info = DatasetInfo(
            name=name,
            layout=layout,
            source=source_label or str(source.resolve()),
            class_names=tuple(class_names),
            counts={split: int((destinations == split).sum()) for split in SPLITS},
            class_counts={
                split: _count_classes(labels[destinations == split], len(class_names))
                for split in SPLITS
            },
            unlabelled_test=int(((destinations == "test") & (labels < 0)).sum()),
            max_side=max_side,
            val_fraction=val_fraction,
            seed=seed,
            bbox_convention=BBOX_CONVENTION,
            skipped=recorder.counts("skipped"),
            repaired=recorder.counts("repaired"),
            unknown_boxes=_count_unknown_boxes(judged, destinations),
            unknown_box_reasons=recorder.counts(UNKNOWN),
            whole_image_boxes=judged.whole_image,
            box_findings=tuple(judged.findings),
            resized=kept.resized,
            reencoded=kept.reencoded,
            problems=tuple(recorder.examples()),
            generator=dict(generator) if generator else None,
        )
        (folder / DATASET_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return PrepareResult(out, info, tuple(recorder.problems))
