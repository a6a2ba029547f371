"""Preparing a data set: the files, the hold-out, kept and re-encoded images, bad input."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from stanford_files import image_bytes, record, write_devkit

from cars.data import (
    BBOX_CONVENTION,
    DataError,
    prepare_dataset,
    read_annotations,
    read_class_names,
    read_dataset_info,
    split_train_val,
)

BOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
COLUMNS = ["image", "label", *BOX_COLUMNS, "width", "height", "source_file"]


def _table(folder: Path | str, split: str):
    return pq.read_table(Path(folder) / f"{split}.parquet").to_pandas()


def test_a_prepared_set_has_its_files_counts_and_hold_out(
    prepared_set: Path, synthetic_source: Path
) -> None:
    assert sorted(p.name for p in prepared_set.iterdir()) == [
        "dataset.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    assert [p.name for p in prepared_set.parent.iterdir()] == [prepared_set.name]
    info = read_dataset_info(str(prepared_set))
    assert info.layout == "devkit"
    assert list(info.class_names) == read_class_names(synthetic_source)
    assert dict(info.counts) == {"train": 36, "val": 12, "test": 16}
    assert info.class_counts["val"] == (3, 3, 3, 3)  # stratified: a quarter of each class
    assert info.has_test_labels and info.bbox_convention == BBOX_CONVENTION
    for split in ("train", "val", "test"):
        table = _table(prepared_set, split)
        assert list(table.columns) == COLUMNS
        assert len(table) == info.counts[split]
        assert np.bincount(table.label, minlength=4).tolist() == list(info.class_counts[split])
    train, val = _table(prepared_set, "train"), _table(prepared_set, "val")
    assert not set(train.source_file) & set(val.source_file)
    assert set(train.source_file) | set(val.source_file) == {
        f"cars_train/{i:05d}.jpg" for i in range(1, 49)
    }


def test_small_valid_jpegs_are_stored_unchanged_with_their_boxes(
    prepared_set: Path, synthetic_source: Path
) -> None:
    annotations = read_annotations(synthetic_source).set_index("source_file")
    table = _table(prepared_set, "train")
    for row in table.itertuples():
        assert row.image == (synthetic_source / row.source_file).read_bytes()
        expected = annotations.loc[row.source_file, BOX_COLUMNS].tolist()
        assert [row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2] == expected
        with Image.open(io.BytesIO(row.image)) as image:
            assert image.size == (row.width, row.height)


def test_large_images_are_downscaled_with_their_boxes(
    synthetic_source: Path, tmp_path: Path
) -> None:
    result = prepare_dataset(synthetic_source, tmp_path / "small", max_side=64, progress=False)
    annotations = read_annotations(synthetic_source).set_index("source_file")
    table = _table(tmp_path / "small", "test")
    assert result.info.resized == result.info.reencoded == 64  # all 64 photos are wider
    for row in table.itertuples():
        with Image.open(synthetic_source / row.source_file) as original:
            scale = row.width / original.width
        with Image.open(io.BytesIO(row.image)) as image:
            assert image.format == "JPEG" and image.size == (row.width, row.height)
        assert max(row.width, row.height) == 64
        expected = np.array(annotations.loc[row.source_file, BOX_COLUMNS].tolist()) * scale
        stored = np.array([row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2])
        assert np.abs(stored - expected).max() <= 1


def test_the_hold_out_is_stratified_keeps_training_images_and_follows_the_seed() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)

    def per_class(is_val: np.ndarray) -> list[int]:
        return [int(is_val[labels == c].sum()) for c in range(3)]

    is_val = split_train_val(labels, 0.2, seed=0)
    assert per_class(is_val) == [2, 1, 0]  # at least one from a class of three
    assert (split_train_val(labels, 0.2, seed=0) == is_val).all()
    assert any((split_train_val(labels, 0.2, seed=s) != is_val).any() for s in range(1, 5))
    assert per_class(split_train_val(labels, 0.9, seed=0)) == [9, 2, 0]  # one stays to train


# Each bad image of a two-class devkit folder: how to break it, and what prepare does.
def _missing(root: Path) -> None:
    (root / "cars_train" / "00002.jpg").unlink()


def _truncated(root: Path) -> None:
    path = root / "cars_train" / "00002.jpg"
    path.write_bytes(path.read_bytes()[:300])


def _grayscale(root: Path) -> None:
    (root / "cars_train" / "00002.jpg").write_bytes(image_bytes(mode="L"))


def _cmyk(root: Path) -> None:
    (root / "cars_train" / "00002.jpg").write_bytes(image_bytes(mode="CMYK"))


def _png(root: Path) -> None:
    (root / "cars_train" / "00002.jpg").write_bytes(image_bytes(fmt="PNG"))


TRAIN = [record(f"{i:05d}.jpg", (11, 6, 60, 50), 1 + i % 2) for i in range(1, 7)]
TEST = [record("00001.jpg", (5, 5, 40, 30), 1)]
BROKEN: dict[str, tuple[Callable[[Path], None] | None, list, str, str]] = {
    # kind: (break the image, or None to change the records; records; action; message)
    "missing_image": (_missing, TRAIN, "skipped", "does not exist"),
    "unreadable_image": (_truncated, TRAIN, "skipped", "cannot be decoded"),
    "not_rgb": (_grayscale, TRAIN, "repaired", "L image, converted to RGB"),
    "not_jpeg": (_png, TRAIN, "repaired", "PNG data, re-encoded as JPEG"),
    "bbox_clipped": (
        None,
        [*TRAIN[:1], record("00002.jpg", (70, 50, 100, 70), 2), *TRAIN[2:]],
        "repaired",
        "reaches outside the 80x60 image",
    ),
    "empty_bbox": (
        None,
        [*TRAIN[:1], record("00002.jpg", (90, 10, 120, 40), 2), *TRAIN[2:]],
        "box_unknown",
        "has no area inside the 80x60 image",
    ),
    "inverted_bbox": (
        None,
        [*TRAIN[:1], record("00002.jpg", (60, 10, 20, 40), 2), *TRAIN[2:]],
        "box_unknown",
        "is inverted",
    ),
    "duplicate": (None, [*TRAIN, TRAIN[1]], "skipped", "listed again (record 7)"),
}


def _broken_folder(root: Path, kind: str) -> Path:
    mutate, train, _, _ = BROKEN[kind]
    write_devkit(root, ["Class A", "Class B"], train, TEST)
    if mutate is not None:
        mutate(root)
    return root


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_bad_image_is_skipped_or_repaired_and_counted(tmp_path: Path, kind: str) -> None:
    _, records, action, message = BROKEN[kind]
    source = _broken_folder(tmp_path / "cars", kind)
    result = prepare_dataset(source, tmp_path / "set", progress=False)
    info = read_dataset_info(str(tmp_path / "set"))
    counted = {"box_unknown": "unknown_box_reasons"}.get(action, action)
    assert dict(getattr(info, counted)) == {kind: 1}
    [problem] = info.problems
    assert problem["source_file"] == "cars_train/00002.jpg" and message in problem["detail"]
    if action == "box_unknown":
        assert sum(info.unknown_boxes.values()) == 1
        assert "boxes unknown for 1 images" in result.summary()
        assert f"{kind} 1): images and labels kept" in result.summary()
    else:
        assert f"{action} 1: {kind} 1" in result.summary()
    rows = pd.concat([_table(tmp_path / "set", "train"), _table(tmp_path / "set", "val")])
    kept = rows[rows.source_file == "cars_train/00002.jpg"]
    # A repaired image is kept, and so is one whose box is unknown; a skipped one is
    # not, unless a first listing of it is.
    assert len(kept) == (0 if kind in ("missing_image", "unreadable_image") else 1)
    assert len(rows) == 6 - (action == "skipped" and kind != "duplicate")
    for row in kept.itertuples():
        with Image.open(io.BytesIO(row.image)) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
        assert row.label == int(records[1]["class"]) - 1 and (row.width, row.height) == (80, 60)
        if action == "box_unknown":
            assert kept[BOX_COLUMNS].isna().all(axis=None)
        else:
            assert 0 <= row.bbox_x1 < row.bbox_x2 <= row.width
            assert 0 <= row.bbox_y1 < row.bbox_y2 <= row.height


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_strict_makes_a_bad_image_an_error_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    _, _, _, message = BROKEN[kind]
    source = _broken_folder(tmp_path / "cars", kind)
    with pytest.raises(DataError) as raised:
        prepare_dataset(source, tmp_path / "out" / "set", strict=True, progress=False)
    assert "cars_train/00002.jpg" in str(raised.value) and message in str(raised.value)
    assert list((tmp_path / "out").glob("*")) == []  # no set, no temporary folder


def test_cmyk_images_are_converted(tmp_path: Path) -> None:
    write_devkit(tmp_path / "cars", ["A", "B"], TRAIN, TEST)
    _cmyk(tmp_path / "cars")
    info = prepare_dataset(tmp_path / "cars", tmp_path / "set", progress=False).info
    assert dict(info.repaired) == {"not_rgb": 1}
    assert "CMYK image" in info.problems[0]["detail"]


def test_an_existing_set_is_replaced_only_with_force_and_only_when_complete(
    synthetic_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "set"
    prepare_dataset(synthetic_source, out, val_fraction=0.25, progress=False)
    with pytest.raises(DataError, match="already holds a prepared data set; pass --force"):
        prepare_dataset(synthetic_source, out, progress=False)
    before = (out / "dataset.json").read_text()
    broken = _broken_folder(tmp_path / "broken", "missing_image")
    with pytest.raises(DataError, match="does not exist"):
        prepare_dataset(broken, out, strict=True, force=True, progress=False)
    assert (out / "dataset.json").read_text() == before  # the old set survives a failed run
    prepare_dataset(synthetic_source, out, val_fraction=0.5, force=True, progress=False)
    assert json.loads((out / "dataset.json").read_text())["val_fraction"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "set"]


def test_a_folder_that_is_not_a_set_is_never_replaced(
    synthetic_source: Path, tmp_path: Path
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match=r"is not a prepared data set.*even with --force"):
        prepare_dataset(synthetic_source, tmp_path / "mine", force=True, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_set_can_be_written_to_a_uri(synthetic_source: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "remote" / "set").as_uri()
    result = prepare_dataset(synthetic_source, uri, progress=False)
    assert result.out == uri
    assert read_dataset_info(uri).counts == result.info.counts
    assert len(_table(tmp_path / "remote" / "set", "test")) == 16


def test_parallel_checking_gives_the_same_set(synthetic_source: Path, tmp_path: Path) -> None:
    prepare_dataset(synthetic_source, tmp_path / "one", workers=1, progress=False)
    prepare_dataset(synthetic_source, tmp_path / "two", workers=2, progress=False)
    for split in ("train", "val", "test"):
        assert _table(tmp_path / "one", split).equals(_table(tmp_path / "two", split))


def test_bad_arguments_are_named(synthetic_source: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"source folder .* does not exist"):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "set")
    with pytest.raises(DataError, match="max_side=8"):
        prepare_dataset(synthetic_source, tmp_path / "set", max_side=8)
    with pytest.raises(DataError, match="val_fraction=1"):
        prepare_dataset(synthetic_source, tmp_path / "set", val_fraction=1)
    with pytest.raises(DataError, match="is a URI"):
        prepare_dataset("s3://bucket/cars", tmp_path / "set")
    assert not (tmp_path / "set").exists()
