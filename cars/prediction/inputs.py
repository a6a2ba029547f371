"""What ``--images`` names, read as a Ray Dataset of encoded images.

A folder (searched recursively) or an ``s3://`` prefix is read with
``ray.data.read_binary_files``, so that a file Pillow cannot decode becomes a row
with an error later instead of failing the read; a prepared data set's split is
read with ``ray.data.read_parquet`` and brings its labels and boxes along.
Every row has ``path`` and ``bytes``; a split's rows also ``label`` and the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray.data

from cars.data import DATASET_FILE, DataError, read_dataset_info
from cars.data.info import require_prepared_file, split_file
from cars.data.readers import BBOX_FIELDS
from cars.paths import is_uri, resolve_path
from cars.storage import exists, join_path

# What Pillow decodes; anything else in a folder (notes, annotations) is not an image.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "ppm")


@dataclass(frozen=True)
class ImageSource:
    """A folder or prefix of image files, or one split of a prepared data set."""

    path: str
    split: str | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def has_labels(self) -> bool:
        """Whether rows carry true labels (a prepared split; -1 where unknown)."""
        return self.split is not None

    def describe(self) -> str:
        """The source in words, for the job's first line."""
        if self.split is None:
            return f"images under {self.path}"
        return f"the {self.split} split of the prepared data set {self.path}"


def resolve_image_source(images: str, split: str | None = None) -> ImageSource:
    """Find out what ``images`` is; a clear error when it is nothing readable.

    Args:
        images: a folder, an ``s3://`` prefix, or a prepared data set.
        split: for a prepared data set, the split to predict (default ``test``).
    """
    path = resolve_path(images)
    if exists(join_path(path, DATASET_FILE)):
        info = read_dataset_info(path)
        chosen = split or "test"
        require_prepared_file(path, split_file(chosen))
        return ImageSource(path=path, split=chosen, class_names=tuple(info.class_names))
    if split is not None:
        raise DataError(
            f"--split {split} applies to a prepared data set, but {path} holds no {DATASET_FILE}; "
            "drop --split to classify every image under the folder"
        )
    if not is_uri(path):
        folder = Path(path)
        if not folder.is_dir():
            raise DataError(
                f"--images {path} is not a folder; pass a folder of images, an s3:// prefix "
                "or a prepared data set"
            )
        if not any(_is_image_name(p) for p in folder.rglob("*") if p.is_file()):
            raise DataError(
                f"no image files under {path} (looked for {', '.join(IMAGE_EXTENSIONS)}, "
                "recursively)"
            )
    return ImageSource(path=path)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS


def read_image_source(source: ImageSource) -> ray.data.Dataset:
    """The source's rows: ``path`` and ``bytes``, and for a split ``label`` and the box."""
    if source.split is None:
        files = ray.data.read_binary_files(
            source.path, include_paths=True, file_extensions=list(IMAGE_EXTENSIONS)
        )
        if not is_uri(source.path):
            return files
        scheme = source.path.split("://", 1)[0] + "://"
        return files.map_batches(_with_scheme, fn_kwargs={"scheme": scheme}, batch_format="numpy")
    file = join_path(source.path, split_file(source.split))
    columns = ["image", "source_file", "label", *BBOX_FIELDS]
    dataset = ray.data.read_parquet(file).select_columns(columns)
    return dataset.rename_columns({"image": "bytes", "source_file": "path"})


def _with_scheme(batch: dict[str, np.ndarray], scheme: str) -> dict[str, np.ndarray]:
    """Give back the scheme that Ray's file listing drops (``bucket/key`` for ``s3://``)."""
    paths = [p if "://" in p else f"{scheme}{p}" for p in batch["path"]]
    batch["path"] = np.array(paths, dtype=object)
    return batch
