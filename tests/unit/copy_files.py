"""Writing the public copies of Stanford Cars for tests, independently of ``cars.data``.

Each writer takes the records of a devkit copy (``stanford_files.record``) and
writes the same images, byte for byte, in another layout: Kaggle's class folders
(``train/<class name>/``, a ``/`` in a name written as ``-``, with ``names.csv``
and headerless ``anno_train.csv`` / ``anno_test.csv`` when asked), and the Hub's
Parquet export (``data/<split>-00000-of-00001.parquet`` with an ``image`` struct
column and an integer ``label``, the class names in ``README.md``'s front matter).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from stanford_files import Record, image_bytes, record, write_devkit

SPLITS = ("train", "test")
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def folder_of(class_name: str) -> str:
    """The folder name a class-folder copy stores a class under."""
    return class_name.replace("/", "-")


def _image(split: str, r: Record, sizes: Mapping[str, tuple[int, int]]) -> bytes:
    # The same key as stanford_files.write_devkit: the same bytes as the devkit copy.
    return image_bytes(sizes.get(str(r["fname"]), (80, 60)), key=f"{split}/{r['fname']}")


def write_class_folders(
    root: Path,
    class_names: Sequence[str],
    train: Sequence[Record],
    test: Sequence[Record],
    *,
    wrap: Sequence[str] = ("car_data", "car_data"),
    names_file: bool = True,
    annotations: bool = True,
    folder_names: Mapping[str, str] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """A class-folder copy under ``root/<wrap...>/``, its side files in ``root``.

    Every class gets a folder in both splits (the copies have one per class);
    ``folder_names`` renames some folders (class name -> folder name).
    """
    images = root.joinpath(*wrap)
    renamed = folder_names or {}
    for split, records in zip(SPLITS, (train, test), strict=True):
        for name in class_names:
            (images / split / renamed.get(name, folder_of(name))).mkdir(parents=True, exist_ok=True)
        lines = []
        for r in records:
            name = class_names[int(r["class"]) - 1]
            path = images / split / renamed.get(name, folder_of(name)) / str(r["fname"])
            path.write_bytes(_image(split, r, sizes or {}))
            box = [r["bbox_x1"], r["bbox_y1"], r["bbox_x2"], r["bbox_y2"]]
            lines.append([r["fname"], *box, r["class"]])
        if annotations:
            with (root / f"anno_{split}.csv").open("w", newline="") as file:
                csv.writer(file).writerows(lines)
    if names_file:
        (root / "names.csv").write_text("".join(f"{name}\n" for name in class_names))
    return root


def dataset_card(names: Sequence[str]) -> str:
    """A dataset card as the Hub writes one for an image set with a ClassLabel column."""
    label_names = "".join(f"          '{i}': {name}\n" for i, name in enumerate(names))
    return (
        "---\n"
        "license: other\n"
        "dataset_info:\n"
        "  features:\n"
        "  - name: image\n"
        "    dtype: image\n"
        "  - name: label\n"
        "    dtype:\n"
        "      class_label:\n"
        "        names:\n"
        f"{label_names}"
        "  splits:\n"
        "  - name: train\n"
        "  - name: test\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        "  - split: train\n"
        "    path: data/train-*\n"
        "  - split: test\n"
        "    path: data/test-*\n"
        "---\n\n"
        "# Stanford Cars\n\nThe Cars dataset contains 16,185 images of 196 classes of cars.\n"
    )


def write_hf_parquet(
    root: Path,
    class_names: Sequence[str],
    train: Sequence[Record],
    test: Sequence[Record],
    *,
    card_order: Sequence[int] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """A Parquet export in ``root``; the card lists the classes in ``card_order``
    (devkit indices, 0-based; by default the devkit's order) and labels follow it."""
    order = list(card_order) if card_order is not None else list(range(len(class_names)))
    position = {devkit: i for i, devkit in enumerate(order)}
    (root / "data").mkdir(parents=True)
    for split, records in zip(SPLITS, (train, test), strict=True):
        images = [{"bytes": _image(split, r, sizes or {}), "path": r["fname"]} for r in records]
        labels = [position[int(r["class"]) - 1] if "class" in r else -1 for r in records]
        table = pa.table(
            {"image": pa.array(images, type=IMAGE_TYPE), "label": pa.array(labels, pa.int64())}
        )
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text(dataset_card([class_names[i] for i in order]))
    return root


# Images of four of Stanford Cars' classes (1-based devkit indices): the first two,
# the one whose name holds a "/" (Ram C/V Cargo Van Minivan 2012) and the last.
IMAGE_CLASSES = (1, 2, 174, 196)


def official_records() -> tuple[list[Record], list[Record]]:
    """Train and test records of a small copy over Stanford Cars' official classes."""
    train = [
        record(f"{i:05d}.jpg", (6 + i, 9, 70, 50 + i % 5), IMAGE_CLASSES[i % 4])
        for i in range(1, 13)
    ]
    test = [record(f"{i:05d}.jpg", (5, 5 + i, 60, 52), IMAGE_CLASSES[i % 4]) for i in range(1, 5)]
    return train, test


# The copies of official_records() the tests compare with its devkit copy.


def write_kaggle_copy(root: Path, class_names: Sequence[str]) -> Path:
    """Kaggle's class folders in car_data/car_data/, with names.csv and anno_*.csv."""
    return write_class_folders(root, class_names, *official_records())


def write_bare_folders(root: Path, class_names: Sequence[str], **options) -> Path:
    """Class folders alone: no names file, no boxes."""
    return write_class_folders(
        root, class_names, *official_records(), names_file=False, annotations=False, **options
    )


def write_sorted_card_export(root: Path, class_names: Sequence[str]) -> Path:
    """A Parquet export whose card lists the classes sorted by name, labels following it."""
    order = sorted(range(len(class_names)), key=lambda i: class_names[i])
    return write_hf_parquet(root, class_names, *official_records(), card_order=order)


def write_devkit_beside_images(root: Path, class_names: Sequence[str]) -> Path:
    """A devkit copy in root/stanford_cars/: nested image folders, the .mat files beside them."""
    copy = write_devkit(root / "stanford_cars", class_names, *official_records(), nested=True)
    for file in (copy / "devkit").iterdir():
        file.rename(copy / file.name)
    (copy / "devkit").rmdir()
    return root
