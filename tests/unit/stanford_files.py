"""Writing Stanford Cars folders for tests, independently of ``cars.data``.

The ``.mat`` files are built the way the real ones are laid out when scipy
reads them: ``annotations`` a 1 x N struct array whose fields hold 1x1 ``uint8``
or ``uint16`` arrays or 1-element string arrays, ``class_names`` a 1 x N cell
array. ``test_readers.py`` checks that structure with ``loadmat``.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

Record = dict[str, int | str]


def mat_value(value: int | str) -> np.ndarray:
    """A struct field's value as Stanford Cars stores it."""
    if isinstance(value, str):
        return np.array([value])
    return np.array([[value]], dtype=np.uint8 if 0 <= value < 256 else np.uint16)


def struct_array(records: Sequence[Record]) -> np.ndarray:
    """A 1 x N struct array with the fields of the first record, in its order."""
    fields = list(records[0])
    array = np.empty((1, len(records)), dtype=[(name, object) for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            array[0, i][name] = mat_value(record[name])
    return array


def cell_array(strings: Sequence[str]) -> np.ndarray:
    """A 1 x N cell array of strings."""
    array = np.empty((1, len(strings)), dtype=object)
    for i, text in enumerate(strings):
        array[0, i] = np.array([text])
    return array


def record(fname: str, box: tuple[int, int, int, int], cls: int | None = None) -> Record:
    """A devkit annotation record; ``box`` is 1-based inclusive, as in the real files."""
    values: Record = dict(zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), box, strict=True))
    if cls is not None:
        values["class"] = cls
    values["fname"] = fname
    return values


def image_bytes(
    size: tuple[int, int] = (80, 60), mode: str = "RGB", fmt: str = "JPEG", key: str = ""
) -> bytes:
    """A small image with some structure, encoded as ``fmt``; each ``key`` draws another.

    Copies are checked for one image stored twice (the same bytes under two names),
    so every file a test writes as a distinct image has its own ``key``.
    """
    width, height = size
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
    pixels[..., 1] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    if key:
        noise = np.random.default_rng(zlib.crc32(key.encode())).integers(0, 64, pixels.shape)
        pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_devkit(
    root: Path,
    class_names: Sequence[str],
    train: Sequence[Record],
    test: Sequence[Record],
    *,
    test_labels: str | None = "root",
    nested: bool = False,
    images: bool = True,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """A devkit-layout folder; test labels go to ``test_labels`` ("root", "devkit", None).

    With ``images``, every listed image is written as a small RGB JPEG, 80 x 60
    unless ``image_sizes`` gives its size by ``fname``.
    """
    sizes = image_sizes or {}
    (root / "devkit").mkdir(parents=True)
    for split, records in (("train", train), ("test", test)):
        folder = root / f"cars_{split}" / (f"cars_{split}" if nested else "")
        folder.mkdir(parents=True, exist_ok=True)
        if images:
            for r in records:
                size = sizes.get(str(r["fname"]), (80, 60))
                key = f"{split}/{r['fname']}"
                (folder / str(r["fname"])).write_bytes(image_bytes(size, key=key))
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": cell_array(class_names)})
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(train)})
    unlabelled = [{k: v for k, v in r.items() if k != "class"} for r in test]
    scipy.io.savemat(
        root / "devkit" / "cars_test_annos.mat", {"annotations": struct_array(unlabelled)}
    )
    if test_labels is not None:
        folder = root if test_labels == "root" else root / "devkit"
        scipy.io.savemat(
            folder / "cars_test_annos_withlabels.mat", {"annotations": struct_array(test)}
        )
    return root


def write_all_in_one(
    root: Path, class_names: Sequence[str], records: Sequence[Record], *, images: bool = True
) -> Path:
    """An all-in-one folder: ``cars_annos.mat`` with records that have
    ``relative_im_path``, the box, ``class`` and ``test``, and ``car_ims/``."""
    (root / "car_ims").mkdir(parents=True)
    if images:
        for r in records:
            path = str(r["relative_im_path"])
            (root / path).write_bytes(image_bytes(key=path))
    scipy.io.savemat(
        root / "cars_annos.mat",
        {"annotations": struct_array(records), "class_names": cell_array(class_names)},
    )
    return root
