"""The rows of a prepared set: checked once into a staging file, then routed to the splits.

Each image is checked and re-encoded once (:mod:`cars.data.images`) and its row
written, in the records' order, to one staging file with null boxes: a copy's
boxes are judged only once every image's size is known (:mod:`cars.data.box_fit`),
and the ``val`` hold-out only once the kept images are. The staged rows are then
routed, with their judged boxes, to one table per split; a row routed nowhere (a
duplicate of another image) is dropped there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cars.data.boxes import Box
from cars.data.images import StoredImage, check_images
from cars.data.info import SPLITS, split_file
from cars.data.layouts import BBOX_FIELDS, ImageSource
from cars.data.problems import ProblemRecorder

BATCH_ROWS = 256
NOWHERE = ""  # the destination of a staged row that goes to no split

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
COMPRESSION = {name: "none" if name == "image" else "zstd" for name in SCHEMA.names}


@dataclass
class StagedRows:
    """What the staging pass learnt of the kept rows, in the staging file's order."""

    labels: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    source_files: list[str] = field(default_factory=list)
    boxes: list[Box | None] = field(default_factory=list)  # annotated, original pixels
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    stored_sizes: list[tuple[int, int]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    reencoded: int = 0
    resized: int = 0

    def add(self, row, box: Box | None, stored: StoredImage) -> None:
        """Note a kept row and what its image became."""
        self.reencoded += stored.reencoded
        self.resized += stored.resized
        self.labels.append(int(row.label))
        self.splits.append(row.split)
        self.source_files.append(row.source_file)
        self.boxes.append(box)
        self.original_sizes.append((stored.original_width, stored.original_height))
        self.stored_sizes.append((stored.width, stored.height))
        self.digests.append(stored.digest)


def _annotated_boxes(frame: pd.DataFrame) -> list[Box | None]:
    values = frame[list(BBOX_FIELDS)].to_numpy(dtype=object, na_value=None).tolist()
    return [None if None in box else tuple(int(v) for v in box) for box in values]


class _BatchWriter:
    """Rows gathered into Arrow batches of :data:`BATCH_ROWS` for a Parquet writer."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer = writer
        self.columns: dict[str, list] = {name: [] for name in SCHEMA.names}

    def add(self, values: Sequence) -> None:
        for column, value in zip(SCHEMA.names, values, strict=True):
            self.columns[column].append(value)
        if len(self.columns["image"]) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.writer.write_table(pa.table(self.columns, schema=SCHEMA))
        self.columns = {name: [] for name in SCHEMA.names}


def stage_rows(
    images: ImageSource,
    frame: pd.DataFrame,
    staging_file: Path,
    *,
    max_side: int,
    recorder: ProblemRecorder,
    workers: int | None,
    progress: bool,
    name: str,
) -> StagedRows:
    """Check every record's image and write the kept rows, in order, to one staging file.

    The staged boxes are null: they are judged once every image's size is known.
    """
    boxes = _annotated_boxes(frame)
    results = check_images(
        images.jobs(frame.source_file.tolist()), max_side, total=len(frame), workers=workers
    )
    bar = tqdm(
        results,
        total=len(frame),
        desc=f"preparing {name}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        mininterval=1.0,
    )
    kept = StagedRows()
    with (
        closing(results),
        pq.ParquetWriter(staging_file, SCHEMA, compression=COMPRESSION) as writer,
    ):
        batches = _BatchWriter(writer)
        for row, box, (stored, issues) in zip(
            frame.itertuples(index=False), boxes, bar, strict=True
        ):
            for issue in issues:
                recorder.add(row.source_file, *issue, split=row.split)
            if stored is None:
                continue
            kept.add(row, box, stored)
            nulls = [None] * len(BBOX_FIELDS)
            batches.add(
                (stored.data, row.label, *nulls, stored.width, stored.height, row.source_file)
            )
        batches.flush()
    return kept


def _box_columns(boxes: Sequence[Box | None]) -> list[pa.Array]:
    """The four box columns, null where a box is unknown."""
    return [
        pa.array([None if box is None else box[k] for box in boxes], type=pa.int32())
        for k in range(4)
    ]


def write_splits(
    staging_file: Path, folder: Path, destinations: np.ndarray, boxes: Sequence[Box | None]
) -> None:
    """Route the staged rows, in order, with their judged boxes, to one table per split."""
    writers = {
        split: pq.ParquetWriter(folder / split_file(split), SCHEMA, compression=COMPRESSION)
        for split in SPLITS
    }
    try:
        start = 0
        for staged in pq.ParquetFile(staging_file).iter_batches(batch_size=BATCH_ROWS):
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
