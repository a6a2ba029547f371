"""The Hugging Face Parquet layout: ``data/train-*.parquet``, ``data/test-*.parquet``.

What the Hub's Parquet conversion and ``datasets``' ``push_to_hub`` write: an
``image`` column (a struct of the image file's ``bytes`` and its ``path``) and an
integer ``label`` column (-1 where unknown), with the class names in the dataset
card (:mod:`cars.data.layouts.dataset_card`). A record's ``source_file`` is the
Parquet file and the row, ``data/train-00000-of-00002.parquet#17``; the image
bytes are streamed from the files in that order when the set is prepared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cars.data.errors import DataError
from cars.data.layouts.dataset_card import CARD_FILE, read_class_label_names
from cars.data.layouts.listing import (
    SourceCopy,
    build_records,
    find_side_file,
    found_at,
    relative_name,
)

NAME = "hf_parquet"
SPLITS = ("train", "test")
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"
NEEDS = ("data/train-*.parquet",)
DESCRIPTION = (
    "data/train-*.parquet and data/test-*.parquet (an image column of {bytes, path} and an "
    "integer label column), with the dataset card README.md naming the classes"
)
_BATCH_ROWS = 64


def _files(folder: Path, split: str) -> list[Path]:
    return sorted((folder / "data").glob(f"{split}-*.parquet"))


def missing(folder: Path, source: Path) -> list[str]:
    """What ``folder`` lacks of the layout (nothing: it is a Parquet export)."""
    del source
    return [] if _files(folder, "train") else list(NEEDS)


def _image_bytes(column: pa.Array) -> list[bytes | None]:
    if pa.types.is_struct(column.type):
        return column.field("bytes").to_pylist()
    return column.to_pylist()


def _check_schema(path: Path, schema: pa.Schema) -> None:
    image = schema.field(IMAGE_COLUMN).type if IMAGE_COLUMN in schema.names else None
    if image is None or not (
        pa.types.is_binary(image)
        or pa.types.is_large_binary(image)
        or (pa.types.is_struct(image) and image.get_field_index("bytes") >= 0)
    ):
        raise DataError(
            f"{path} has no {IMAGE_COLUMN!r} column of image bytes (a struct of bytes and "
            f"path, as the Hub writes it); its columns are {', '.join(schema.names)}"
        )
    label = schema.field(LABEL_COLUMN).type if LABEL_COLUMN in schema.names else None
    if label is None or not pa.types.is_integer(label):
        raise DataError(
            f"{path} has no integer {LABEL_COLUMN!r} column; its columns are "
            f"{', '.join(schema.names)}"
        )


def _read_labels(path: Path, num_classes: int) -> list[int]:
    try:
        file = pq.ParquetFile(path)
        _check_schema(path, file.schema_arrow)
        labels = file.read(columns=[LABEL_COLUMN]).column(LABEL_COLUMN).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path} is not a readable Parquet file: {error}") from error
    for row, label in enumerate(labels):
        if label is not None and not -1 <= label < num_classes:
            raise DataError(
                f"{path}: row {row} has label {label}, outside 0..{num_classes - 1} "
                f"(the dataset card names {num_classes} classes; -1 is unknown)"
            )
    return [-1 if label is None else int(label) for label in labels]


@dataclass(frozen=True)
class ParquetImages:
    """Image bytes read from the Parquet files, row by row, in file order."""

    source: Path

    def _rows(self, file: str) -> Iterator[bytes | None]:
        parquet = pq.ParquetFile(self.source / file)
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=[IMAGE_COLUMN]):
            yield from _image_bytes(batch.column(IMAGE_COLUMN))

    def jobs(self, source_files: Sequence[str]) -> Iterator[str | bytes]:
        """Each row's bytes (``b""`` where a row has none), reading each file once when
        the rows come in file order."""
        file, rows, at = "", iter(()), -1
        for name in source_files:
            wanted, row = name.rsplit("#", 1)
            index = int(row)
            if wanted != file or index <= at:
                file, rows, at = wanted, self._rows(wanted), -1
            data = None
            while at < index:
                data, at = next(rows), at + 1
            yield data or b""


def read_hf_parquet(folder: Path, source: Path) -> SourceCopy:
    """Read the Parquet export in ``folder`` (``source``: the folder the user named)."""
    if missing(folder, source):
        raise DataError(f"{folder} is not a Hugging Face Parquet export: it needs {DESCRIPTION}")
    card = find_side_file(folder, source, (CARD_FILE,))
    if card is None:
        raise DataError(
            f"found {NEEDS[0]} in {folder} but no dataset card {CARD_FILE} beside data/ to "
            "name the classes; download README.md from the data set's Hub page next to data/"
        )
    names = read_class_label_names(card, LABEL_COLUMN)
    rows, found = [], {}
    for split in SPLITS:
        files = _files(folder, split)
        found[split] = 0
        for path in files:
            labels = _read_labels(path, len(names))
            found[split] += len(labels)
            file = relative_name(path, source)
            rows += [
                {"source_file": f"{file}#{i}", "split": split, "label": label}
                for i, label in enumerate(labels)
            ]
    return SourceCopy(
        layout=NAME,
        source=source,
        found_at=found_at(folder, source),
        records=build_records(rows),
        class_names=tuple(names),
        names_from=f"the dataset card {relative_name(card, source)}",
        folder_names=False,
        boxes_from={},
        found=found,
        images=ParquetImages(source),
    )
