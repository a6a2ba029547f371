"""Real-world copies of Stanford Cars: no labelled image is lost to its box, and copies
whose boxes do not fit their images (resized, cropped to the boxes) are recognised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from stanford_files import Record, record, write_devkit

from cars.data import DataError, PrepareResult, prepare_dataset, read_dataset_info, split_train_val

BOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
SIZES = [(120, 90), (100, 80), (96, 128)]
TRAIN_IMAGES, TEST_IMAGES = 24, 4


def _box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A car filling most of its photo, as Stanford Cars' 1-based inclusive corners."""
    width, height = size
    return 6, 9, width - 5, height - 4


def _originals() -> tuple[list[Record], list[Record], dict[str, tuple[int, int]]]:
    """Train and test records of two classes, and each image's original size.

    Two training boxes reach past their image's right border by a pixel, as a
    handful of the real annotations do.
    """
    train, test, sizes = [], [], {}
    for i in range(TRAIN_IMAGES + TEST_IMAGES):
        name = f"{i:05d}.jpg"
        size = SIZES[i % len(SIZES)]
        x1, y1, x2, y2 = _box(size)
        if i in (3, 7):
            x2 = size[0] + 1
        sizes[name] = size
        rows = train if i < TRAIN_IMAGES else test
        rows.append(record(name, (x1, y1, x2, y2), 1 + i % 2))
    return train, test, sizes


def _prepare(tmp_path: Path, train, test, sizes, **options) -> PrepareResult:
    source = write_devkit(tmp_path / "cars", ["Coupe", "Van"], train, test, image_sizes=sizes)
    return prepare_dataset(source, tmp_path / "set", progress=False, **options)


def _rows(folder: Path) -> pd.DataFrame:
    splits = [pq.read_table(folder / f"{s}.parquet").to_pandas() for s in ("train", "val", "test")]
    return pd.concat(splits, ignore_index=True).set_index("source_file")


def _every_labelled_image_is_kept(result: PrepareResult, train, test) -> pd.DataFrame:
    info = result.info
    assert info.counts["train"] + info.counts["val"] == TRAIN_IMAGES
    assert info.counts["test"] == TEST_IMAGES and not info.skipped
    rows = _rows(Path(result.out))
    for split, records in (("cars_train", train), ("cars_test", test)):
        for r in records:
            assert rows.loc[f"{split}/{r['fname']}", "label"] == int(r["class"]) - 1
    return rows


def test_an_original_copy_keeps_its_boxes_and_clips_the_few_past_the_border(
    tmp_path: Path,
) -> None:
    train, test, sizes = _originals()
    result = _prepare(tmp_path, train, test, sizes)
    rows = _every_labelled_image_is_kept(result, train, test)
    info = result.info
    assert dict(info.repaired) == {"bbox_clipped": 2}
    assert sum(info.unknown_boxes.values()) == 0 and info.box_findings == ()
    assert not rows[BOX_COLUMNS].isna().any(axis=None)
    for name, (width, height) in sizes.items():
        split = "cars_train" if int(name[:5]) < TRAIN_IMAGES else "cars_test"
        box = rows.loc[f"{split}/{name}", BOX_COLUMNS].tolist()
        x1, y1, x2, y2 = _box((width, height))
        assert box == [x1 - 1, y1 - 1, width if int(name[:5]) in (3, 7) else x2, y2]
    assert "boxes unknown" not in result.summary()


def test_a_resized_copy_is_recognised_and_its_boxes_are_unknown(tmp_path: Path) -> None:
    train, test, sizes = _originals()
    # A small car in the corner still fits the half-size image, but its box is wrong too.
    train[0] = record("00000.jpg", (2, 2, 30, 25), 1)
    half = {name: (w // 2, h // 2) for name, (w, h) in sizes.items()}
    result = _prepare(tmp_path, train, test, half)
    rows = _every_labelled_image_is_kept(result, train, test)
    info = result.info
    assert rows[BOX_COLUMNS].isna().all(axis=None)
    assert sum(info.unknown_boxes.values()) == TRAIN_IMAGES + TEST_IMAGES
    assert dict(info.unknown_box_reasons) == {"bbox_mismatch": TRAIN_IMAGES + TEST_IMAGES}
    assert not info.repaired  # no box is clipped into something wrong
    summary = result.summary()
    assert (
        "23 of 24 train boxes reach outside their images: these images look resized "
        "or cropped from the originals, so their boxes are not used" in summary
    )
    assert "4 of 4 test boxes reach outside their images" in summary
    assert summary.count("look resized or cropped") == 2  # said once per split
    assert "boxes unknown for 28 images" in summary
    assert read_dataset_info(result.out).box_findings == info.box_findings


def test_a_box_cropped_copy_takes_each_box_as_the_whole_image(tmp_path: Path) -> None:
    train, test, sizes = _originals()
    cropped = {}
    for i, r in enumerate([*train, *test]):
        box_w = int(r["bbox_x2"]) - int(r["bbox_x1"]) + 1
        box_h = int(r["bbox_y2"]) - int(r["bbox_y1"]) + 1
        # Some croppers take x2 and y2 as exclusive: the image is a pixel smaller.
        cropped[str(r["fname"])] = (box_w - i % 2, box_h - i % 2)
    cropped["00005.jpg"] = sizes["00005.jpg"]  # one original among the crops
    result = _prepare(tmp_path, train, test, cropped)
    rows = _every_labelled_image_is_kept(result, train, test)
    info = result.info
    assert info.whole_image_boxes == TRAIN_IMAGES + TEST_IMAGES - 1
    assert dict(info.unknown_box_reasons) == {"bbox_mismatch": 1}
    assert rows.loc["cars_train/00005.jpg", BOX_COLUMNS].isna().all()
    known = rows.drop(index="cars_train/00005.jpg")
    assert (known.bbox_x1 == 0).all() and (known.bbox_y1 == 0).all()
    assert (known.bbox_x2 == known.width).all() and (known.bbox_y2 == known.height).all()
    summary = result.summary()
    assert (
        "23 of 24 train images are exactly the size of their boxes: they look cropped to "
        "the boxes, so each such box is the whole image; the other 1 boxes are unknown"
    ) in summary
    assert "4 of 4 test images are exactly the size of their boxes" in summary


def test_a_few_bad_boxes_in_an_original_copy_are_unknown_one_by_one(tmp_path: Path) -> None:
    train, test, sizes = _originals()
    train[5] = record("00005.jpg", (130, 10, 160, 40), 2)  # right of the 96 px image
    train[9] = record("00009.jpg", (60, 40, 20, 10), 2)  # inverted
    train[10] = record("00010.jpg", (10, 10, 90, 100), 1)  # 20 px below the 80 px image
    result = _prepare(tmp_path, train, test, sizes)
    rows = _every_labelled_image_is_kept(result, train, test)
    info = result.info
    assert dict(info.unknown_box_reasons) == {"empty_bbox": 1, "inverted_bbox": 1}
    assert dict(info.repaired) == {"bbox_clipped": 3}
    assert info.box_findings == ()
    unknown = rows.index[rows[BOX_COLUMNS].isna().all(axis=1)]
    assert sorted(unknown) == ["cars_train/00005.jpg", "cars_train/00009.jpg"]
    assert rows.loc["cars_train/00010.jpg", BOX_COLUMNS].tolist() == [9, 9, 90, 80]
    assert not rows.drop(index=unknown)[BOX_COLUMNS].isna().any(axis=None)
    assert "boxes unknown for 2 images" in result.summary()


def test_strict_makes_a_resized_copy_an_error(tmp_path: Path) -> None:
    train, test, sizes = _originals()
    half = {name: (w // 2, h // 2) for name, (w, h) in sizes.items()}
    with pytest.raises(DataError, match=r"24 of 24 train boxes reach outside.*--strict"):
        _prepare(tmp_path, train, test, half, strict=True)
    assert not (tmp_path / "set").exists()


def test_the_hold_out_of_a_class_is_stable_when_another_class_changes() -> None:
    labels = np.array([0] * 20 + [1] * 20)
    keys = [f"cars_train/{i:05d}.jpg" for i in range(40)]
    before = split_train_val(labels, 0.25, seed=0, keys=keys)
    held_out = {k for k, v in zip(keys, before, strict=True) if v}
    assert len(held_out) == 10
    # One image of class 1 skipped, two added: class 0's hold-out stays.
    labels_after = np.array([0] * 20 + [1] * 21)
    keys_after = [*keys[:25], *keys[26:], "cars_train/00050.jpg", "cars_train/00051.jpg"]
    after = split_train_val(labels_after, 0.25, seed=0, keys=keys_after)
    class_0 = {k for k, v, y in zip(keys_after, after, labels_after, strict=True) if v and y == 0}
    assert class_0 == {k for k in held_out if int(k[-9:-4]) < 20}
    assert split_train_val(labels, 0.25, seed=1, keys=keys).tolist() != before.tolist()


def test_a_prepared_hold_out_is_stable_when_an_image_of_another_class_is_missing(
    tmp_path: Path,
) -> None:
    train, test, sizes = _originals()
    first = _prepare(tmp_path / "a", train, test, sizes, val_fraction=0.25)
    source = write_devkit(tmp_path / "b" / "cars", ["Coupe", "Van"], train, test, image_sizes=sizes)
    (source / "cars_train" / "00001.jpg").unlink()  # class Van
    second = prepare_dataset(source, tmp_path / "b" / "set", val_fraction=0.25, progress=False)

    def val_of_class(result: PrepareResult, label: int) -> set[str]:
        val = pq.read_table(Path(result.out) / "val.parquet").to_pandas()
        return set(val.source_file[val.label == label])

    assert second.info.skipped == {"missing_image": 1}
    assert val_of_class(first, 0) == val_of_class(second, 0)
    assert len(val_of_class(first, 0)) == 3
