"""Reading a prepared data set for training: one split as a torch ``Dataset``.

The image bytes stay in an Arrow column, loaded on first access, so the
dataset pickles cheaply to DataLoader workers and Ray workers: each loads the
column itself. Labels, boxes and sizes are small and travel with it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from torch.utils.data import Dataset

from cars.data.boxes import Box, expand_box
from cars.data.decoding import decode_input
from cars.data.info import read_dataset_info, require_prepared_file, split_file
from cars.data.readers import BBOX_FIELDS
from cars.data.transforms import EvalTransform, InputTransform, TrainTransform

__all__ = ["CarsDataset", "read_dataset_info"]


class CarsDataset(Dataset):
    """One split (``train``, ``val`` or ``test``) of a prepared set at a folder or URI.

    Items are ``(transform(image), label)``: with one of :mod:`cars.data.transforms`, a
    uint8 C x H x W tensor, decoded at reduced scale where the transform allows
    (:func:`cars.data.decoding.decode_input`); without a transform, the PIL image.
    With ``bbox_crop`` the image is first cropped to its bounding box enlarged by
    ``bbox_margin`` times the box's size on each side (clipped to the image); an
    image whose box is unknown is used whole (``uncropped`` counts them).
    Test images whose labels are unknown have label -1.
    """

    def __init__(
        self,
        path: str | Path,
        split: str,
        transform: InputTransform | Callable[[Image.Image], Any] | None = None,
        *,
        bbox_crop: bool = False,
        bbox_margin: float = 0.1,
    ) -> None:
        self.path = str(path)
        self.split = split
        self.file = require_prepared_file(self.path, split_file(split))
        self.transform = transform
        self.bbox_crop = bbox_crop
        self.bbox_margin = bbox_margin
        columns = [*BBOX_FIELDS, "label", "width", "height", "source_file"]
        table = pq.read_table(self.file, columns=columns)
        self.labels: np.ndarray = table["label"].to_numpy().astype(np.int64)
        # Unknown boxes are null in the table; here -1 in ``boxes`` and False in ``has_box``.
        self.has_box: np.ndarray = np.ones(len(table), dtype=bool)
        for name in BBOX_FIELDS:
            self.has_box &= ~table[name].is_null().to_numpy(zero_copy_only=False)
        self.boxes: np.ndarray = (
            np.stack([table[name].fill_null(-1).to_numpy() for name in BBOX_FIELDS], axis=1)
            .astype(np.int64)
            .reshape(-1, 4)
        )
        self.boxes[~self.has_box] = -1
        self.sizes: np.ndarray = (
            np.stack([table["width"].to_numpy(), table["height"].to_numpy()], axis=1)
            .astype(np.int64)
            .reshape(-1, 2)
        )
        self.source_files: list[str] = table["source_file"].to_pylist()
        self._images: pa.Array | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # each process loads the image column itself
        return state

    def __len__(self) -> int:
        return len(self.labels)

    def _image_bytes(self, index: int) -> bytes:
        if self._images is None:
            column = pq.read_table(self.file, columns=["image"])["image"]
            # One contiguous array, with 64-bit offsets so that sets over 2 GiB fit.
            self._images = column.cast(pa.large_binary()).combine_chunks()
        return self._images[int(index)].as_py()

    def read_image(self, index: int) -> Image.Image:
        """The stored image of item ``index``, decoded to RGB (never cropped)."""
        with Image.open(io.BytesIO(self._image_bytes(index))) as image:
            return image.convert("RGB")

    @property
    def uncropped(self) -> int:
        """Images that ``bbox_crop`` uses whole, because their box is unknown."""
        return int((~self.has_box).sum()) if self.bbox_crop else 0

    def box(self, index: int) -> Box | None:
        """The box of item ``index`` in stored pixels (x2, y2 exclusive); None if unknown."""
        if not self.has_box[index]:
            return None
        x1, y1, x2, y2 = (int(v) for v in self.boxes[index])
        return x1, y1, x2, y2

    def read_record(self, index: int) -> tuple[Image.Image, int, Box | None]:
        """The raw record of item ``index``: the whole image, its label and its box."""
        return self.read_image(index), int(self.labels[index]), self.box(index)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        box = self.box(index) if self.bbox_crop else None
        if isinstance(self.transform, EvalTransform | TrainTransform):
            pixels = decode_input(self._image_bytes(index), self.transform, box, self.bbox_margin)
            return pixels, int(self.labels[index])
        image = self.read_image(index)
        if box is not None:
            width, height = image.size
            image = image.crop(expand_box(box, width, height, self.bbox_margin))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
