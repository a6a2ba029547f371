"""Preparing every layout: the same labels, names and boxes as the devkit copy of the
same images, boxes checked as the devkit's are, and no image lost silently."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from copy_files import (
    official_records,
    write_bare_folders,
    write_class_folders,
    write_devkit_beside_images,
    write_kaggle_copy,
    write_sorted_card_export,
)
from PIL import Image
from stanford_files import image_bytes, write_devkit

from cars.data import DataError, PrepareResult, prepare_dataset, read_dataset_info
from cars.data.class_order import OFFICIAL_CLASS_NAMES

OFFICIAL = list(OFFICIAL_CLASS_NAMES)
BOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
NO_BOXES = "no bounding boxes in this copy"


def _prepare(source: Path, out: Path, **options) -> PrepareResult:
    return prepare_dataset(source, out, progress=False, val_fraction=0.25, **options)


def _by_image(out: str | Path) -> pd.DataFrame:
    """Every prepared row, indexed by its image's bytes: what a copy's image became."""
    tables = [
        pq.read_table(Path(out) / f"{s}.parquet").to_pandas() for s in ("train", "val", "test")
    ]
    rows = pd.concat(
        [t.assign(split=s) for t, s in zip(tables, ("train", "val", "test"), strict=True)]
    )
    rows["split"] = rows.split.replace({"val": "train"})
    assert not rows.image.duplicated().any()
    return rows.set_index("image").drop(columns=["source_file", "width", "height"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> PrepareResult:
    """The devkit copy of the images, prepared."""
    root = tmp_path_factory.mktemp("reference")
    source = write_devkit(root / "devkit", OFFICIAL, *official_records())
    return _prepare(source, root / "set")


def _kaggle(root: Path) -> Path:
    return write_kaggle_copy(root, OFFICIAL)


def _bare(root: Path) -> Path:
    return write_bare_folders(root, OFFICIAL)


def _hub_sorted(root: Path) -> Path:
    return write_sorted_card_export(root, OFFICIAL)


def _devkit_beside(root: Path) -> Path:
    return write_devkit_beside_images(root, OFFICIAL)


COPIES = {
    "class_folders": (_kaggle, True),
    "bare_class_folders": (_bare, False),
    "hf_parquet": (_hub_sorted, False),
    "devkit_nested": (_devkit_beside, True),
}


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_a_copy_prepares_to_the_devkit_copys_labels_names_and_boxes(
    reference: PrepareResult, tmp_path: Path, copy: str
) -> None:
    write, has_boxes = COPIES[copy]
    result = _prepare(write(tmp_path / "copy"), tmp_path / "set")
    info = result.info
    assert info.class_names == reference.info.class_names == OFFICIAL_CLASS_NAMES
    assert info.is_stanford_cars and info.class_order == "devkit"
    assert dict(info.counts) == dict(reference.info.counts)
    ours, theirs = _by_image(result.out), _by_image(reference.out)
    assert set(ours.index) == set(theirs.index)
    ours = ours.loc[theirs.index]
    assert (ours.label == theirs.label).all() and (ours.split == theirs.split).all()
    if has_boxes:
        assert ours[BOX_COLUMNS].equals(theirs[BOX_COLUMNS]) and info.has_boxes
    else:
        assert ours[BOX_COLUMNS].isna().all(axis=None) and not info.has_boxes
    reread = read_dataset_info(result.out)
    assert reread.class_names == OFFICIAL_CLASS_NAMES and reread.layout == info.layout


def test_a_copy_without_boxes_says_so_once_and_keeps_every_image(tmp_path: Path) -> None:
    result = _prepare(_bare(tmp_path / "cars"), tmp_path / "set", strict=True)
    info = result.info
    assert sum(info.unknown_boxes.values()) == 16 == sum(info.counts.values())
    assert dict(info.unknown_box_reasons) == {"no_box_in_copy": 16}
    assert info.problems == () and not info.has_boxes and dict(info.boxes_from) == {}
    summary = result.summary()
    assert summary.count(NO_BOXES) == 1
    assert "the Grad-CAM measures cannot be computed" in summary
    assert "boxes unknown for" not in summary  # said once, not again per image
    assert read_dataset_info(result.out).has_boxes is False


def test_a_split_without_its_box_file_has_unknown_boxes_said_once(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "cars")
    (source / "anno_test.csv").unlink()
    info = _prepare(source, tmp_path / "set").info
    assert info.unknown_boxes["test"] == 4 and info.unknown_boxes["train"] == 0
    assert dict(info.boxes_from) == {"train": "anno_train.csv"}
    [finding] = info.box_findings
    assert finding.startswith("no bounding boxes for the test images")


def test_annotation_file_boxes_are_judged_as_devkit_boxes(tmp_path: Path) -> None:
    train, test = official_records()
    half = {str(r["fname"]): (40, 30) for r in [*train, *test]}  # the boxes are 80x60's
    source = write_class_folders(tmp_path / "cars", OFFICIAL, train, test, sizes=half)
    result = _prepare(source, tmp_path / "set")
    info = result.info
    assert sum(info.unknown_boxes.values()) == 16
    assert dict(info.unknown_box_reasons) == {"bbox_mismatch": 16}
    assert "12 of 12 train boxes reach outside their images" in result.summary()
    assert info.counts["train"] + info.counts["val"] == 12  # nothing dropped for its box


def test_a_box_naming_another_class_or_absent_is_unknown_and_counted(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "cars")
    lines = (source / "anno_train.csv").read_text().splitlines()
    lines[0] = lines[0].rsplit(",", 1)[0] + ",3"  # 00001.jpg (class 2) said to be class 3
    del lines[4]  # 00005.jpg has no line
    lines.append("09999.jpg,1,1,40,30,196")  # a line whose image is not there
    (source / "anno_train.csv").write_text("\n".join(lines) + "\n")
    result = _prepare(source, tmp_path / "set")
    info = result.info
    assert dict(info.unknown_box_reasons) == {"label_conflict": 1, "bbox_missing": 1}
    assert dict(info.skipped) == {"missing_image": 1}
    rows = _by_image(result.out)
    assert len(rows) == 16  # the conflicting and the unboxed image are kept
    problems = {p["kind"]: p for p in info.problems}
    assert (
        "gives class 3 ('Acura TL Sedan 2012'), the image lies in 'Acura RL Sedan 2012'"
        in (problems["label_conflict"]["detail"])
    )
    assert problems["missing_image"]["source_file"] == (
        "car_data/car_data/train/smart fortwo Convertible 2012/09999.jpg"
    )
    with pytest.raises(DataError, match=r"09999\.jpg: the annotated image does not exist"):
        _prepare(source, tmp_path / "strict", strict=True)
    (source / "anno_train.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="line 1 gives class 3"):
        _prepare(source, tmp_path / "strict", strict=True)


def _image_files_accounted(info, split: str) -> None:
    prepared = info.counts["train"] + info.counts["val"] if split == "train" else info.counts[split]
    file_skips = {
        kind: n
        for kind, n in info.skipped_by_split.get(split, {}).items()
        if kind in ("unreadable_image", "not_in_annotations", "duplicate_content")
    }
    assert info.images_found[split] == prepared + sum(file_skips.values())


def test_no_image_file_of_a_class_folder_copy_is_lost_silently(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "cars")
    train = source / "car_data" / "car_data" / "train"
    test = source / "car_data" / "car_data" / "test"
    (train / "stray.jpg").write_bytes(image_bytes(key="stray"))  # in no class folder
    (train / "Acura RL Sedan 2012" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    # One photo in both splits: the test copy is kept, the training one skipped.
    shutil.copy(test / "Acura RL Sedan 2012" / "00001.jpg", train / "Acura RL Sedan 2012" / "x.jpg")
    (train / "Acura RL Sedan 2012" / "notes.txt").write_text("not an image")
    result = _prepare(source, tmp_path / "set")
    info = result.info
    assert dict(info.images_found) == {"train": 15, "test": 4}
    assert dict(info.skipped_by_split) == {
        "train": {"not_in_annotations": 1, "unreadable_image": 1, "duplicate_content": 1}
    }
    for split in ("train", "test"):
        _image_files_accounted(info, split)
    # The skipped images are in no box file either; that is no one's concern.
    assert dict(info.unknown_box_reasons) == {} and sum(info.unknown_boxes.values()) == 0
    duplicate = next(p for p in info.problems if p["kind"] == "duplicate_content")
    assert duplicate["source_file"].endswith("train/Acura RL Sedan 2012/x.jpg")
    assert duplicate["detail"] == (
        "the same image as car_data/car_data/test/Acura RL Sedan 2012/00001.jpg, which is kept"
    )
    assert (
        "images found: train 15 (12 prepared; 3 skipped: duplicate_content 1, "
        "not_in_annotations 1, unreadable_image 1), test 4 (4 prepared)"
    ) in result.summary()
    saved = json.loads((Path(result.out) / "dataset.json").read_text())
    assert saved["images_found"] == {"train": 15, "test": 4}
    assert saved["skipped_by_split"]["train"]["duplicate_content"] == 1


def test_no_image_file_of_a_devkit_copy_is_lost_silently(tmp_path: Path) -> None:
    source = write_devkit(tmp_path / "cars", OFFICIAL, *official_records())
    (source / "cars_test" / "99999.jpg").write_bytes(image_bytes(key="unlisted"))
    (source / "cars_train" / "._00001.jpg").write_bytes(b"AppleDouble")  # not an image
    info = _prepare(source, tmp_path / "set").info
    assert dict(info.images_found) == {"train": 12, "test": 5}
    assert dict(info.skipped_by_split) == {"test": {"not_in_annotations": 1}}
    [problem] = info.problems
    assert problem == {
        "source_file": "cars_test/99999.jpg",
        "kind": "not_in_annotations",
        "detail": "not listed in cars_test_annos.mat",
        "action": "skipped",
        "split": "test",
    }
    _image_files_accounted(info, "test")


def test_no_row_of_a_parquet_export_is_lost_silently(tmp_path: Path) -> None:
    source = _hub_sorted(tmp_path / "hub")
    file = source / "data" / "test-00000-of-00001.parquet"
    table = pq.read_table(file)
    images = table.column("image").to_pylist()
    images[1]["bytes"] = images[1]["bytes"][:200]  # truncated
    table = table.set_column(0, "image", pa.array(images, type=table.schema.field("image").type))
    pq.write_table(table, file)
    result = _prepare(source, tmp_path / "set")
    info = result.info
    assert dict(info.skipped_by_split) == {"test": {"unreadable_image": 1}}
    assert info.counts["test"] == 3 and info.images_found["test"] == 4
    [problem] = info.problems
    assert problem["source_file"] == "data/test-00000-of-00001.parquet#1"


def test_another_data_set_is_prepared_under_its_own_name_and_classes(tmp_path: Path) -> None:
    train, test = official_records()
    planes = ["Cessna 172", "Airbus A320", "Boeing 737-800"]
    train = [r | {"class": 1 + i % 3} for i, r in enumerate(train)]
    test = [r | {"class": 1 + i % 3} for i, r in enumerate(test)]
    source = write_class_folders(
        tmp_path / "fgvc-planes", planes, train, test, wrap=("data",), names_file=False
    )
    (source / "anno_train.csv").unlink()
    (source / "anno_test.csv").unlink()
    result = _prepare(source, tmp_path / "set")
    info = read_dataset_info(result.out)
    assert info.name == "fgvc-planes" and not info.is_stanford_cars
    assert info.class_names == ("Airbus A320", "Boeing 737-800", "Cessna 172")
    assert info.class_order == "sorted" and info.class_names_from == "class folder names"
    summary = result.summary()
    assert summary.startswith(
        "prepared data set 'fgvc-planes' (class_folders layout, found in data, 3 classes)"
    )
    assert "classes: class folder names: 3 classes in sorted order; none is a Stanford" in summary
    by_image = _by_image(result.out)
    cessna = image_bytes((80, 60), key="train/00001.jpg")
    assert by_image.loc[cessna, "label"] == 2


def test_an_older_dataset_json_still_loads(tmp_path: Path, reference: PrepareResult) -> None:
    values = json.loads((Path(reference.out) / "dataset.json").read_text())
    for key in (
        "found_at",
        "class_names_from",
        "class_order",
        "class_note",
        "boxes_from",
        "has_boxes",
        "images_found",
        "skipped_by_split",
        "notes",
    ):
        del values[key]
    for problem in values["problems"]:
        problem.pop("split", None)
    folder = tmp_path / "old"
    shutil.copytree(reference.out, folder)
    (folder / "dataset.json").write_text(json.dumps(values))
    info = read_dataset_info(folder)
    assert info.has_boxes and info.images_found == {} and info.class_order == ""
    assert info.class_names == OFFICIAL_CLASS_NAMES


def test_stored_images_of_a_parquet_export_are_its_bytes(tmp_path: Path) -> None:
    result = _prepare(_hub_sorted(tmp_path / "hub"), tmp_path / "set")
    test = pq.read_table(Path(result.out) / "test.parquet").to_pandas()
    assert test.source_file.tolist() == [f"data/test-00000-of-00001.parquet#{i}" for i in range(4)]
    for row in test.itertuples():
        with Image.open(io.BytesIO(row.image)) as image:
            assert image.size == (row.width, row.height) == (80, 60)
