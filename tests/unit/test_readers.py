"""The Stanford Cars readers, on ``.mat`` files written with scipy in the real layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from stanford_files import cell_array, record, struct_array, write_all_in_one, write_devkit

from cars.data import DataError, detect_layout, read_annotations, read_class_names

NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]
TRAIN = [
    record("00001.jpg", (39, 116, 569, 375), 3),
    record("00002.jpg", (36, 116, 868, 587), 1),
]
TEST = [record("00001.jpg", (30, 52, 246, 147), 2)]


def test_helper_writes_the_structure_of_the_real_files(tmp_path: Path) -> None:
    path = tmp_path / "annos.mat"
    scipy.io.savemat(path, {"annotations": struct_array(TRAIN), "class_names": cell_array(NAMES)})
    mat = scipy.io.loadmat(path)
    annotations = mat["annotations"]
    assert annotations.shape == (1, 2)
    assert annotations.dtype.names == ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    first = annotations[0, 0]
    assert first["bbox_x1"].shape == (1, 1) and first["bbox_x1"].dtype == np.uint8
    assert first["bbox_x2"].dtype == np.uint16  # 569 does not fit a byte
    assert first["fname"].shape == (1,) and first["fname"][0] == "00001.jpg"
    assert mat["class_names"].shape == (1, 3)
    assert mat["class_names"][0, 2][0] == "Audi TTS Coupe 2012"


@pytest.mark.parametrize("labels_at", ["root", "devkit"])
def test_devkit_rows_labels_and_boxes(tmp_path: Path, labels_at: str) -> None:
    root = write_devkit(tmp_path / "cars", NAMES, TRAIN, TEST, test_labels=labels_at)
    assert detect_layout(root) == "devkit"
    assert read_class_names(root) == NAMES
    frame = read_annotations(root)
    assert frame.source_file.tolist() == [
        "cars_train/00001.jpg",
        "cars_train/00002.jpg",
        "cars_test/00001.jpg",
    ]
    assert frame.split.tolist() == ["train", "train", "test"]
    assert frame.label.tolist() == [2, 0, 1]  # 1-based classes become 0-based labels
    assert frame.class_name.tolist() == [NAMES[2], NAMES[0], NAMES[1]]
    # 1-based inclusive corners become 0-based with x2/y2 exclusive.
    first = frame.iloc[0]
    assert (first.bbox_x1, first.bbox_y1, first.bbox_x2, first.bbox_y2) == (38, 115, 569, 375)


def test_devkit_without_test_labels_marks_them_unknown(tmp_path: Path) -> None:
    root = write_devkit(tmp_path / "cars", NAMES, TRAIN, TEST, test_labels=None)
    test = read_annotations(root).query("split == 'test'")
    assert test.label.tolist() == [-1]
    assert test.class_name.tolist() == [""]


def test_devkit_with_nested_image_folders(tmp_path: Path) -> None:
    root = write_devkit(tmp_path / "cars", NAMES, TRAIN, TEST, nested=True)
    files = read_annotations(root).source_file.tolist()
    assert files[0] == "cars_train/cars_train/00001.jpg"
    assert files[-1] == "cars_test/cars_test/00001.jpg"
    assert all((root / f).is_file() for f in files)


def test_all_in_one_layout(tmp_path: Path) -> None:
    records = [
        {"relative_im_path": "car_ims/000001.jpg", "bbox_x1": 112, "bbox_y1": 7}
        | {"bbox_x2": 853, "bbox_y2": 717, "class": 1, "test": 0},
        {"relative_im_path": "car_ims/000002.jpg", "bbox_x1": 48, "bbox_y1": 24}
        | {"bbox_x2": 441, "bbox_y2": 202, "class": 3, "test": 1},
    ]
    root = write_all_in_one(tmp_path / "cars", NAMES, records)
    assert detect_layout(root) == "all_in_one"
    assert read_class_names(root) == NAMES
    frame = read_annotations(root)
    assert frame.source_file.tolist() == ["car_ims/000001.jpg", "car_ims/000002.jpg"]
    assert frame.split.tolist() == ["train", "test"]
    assert frame.label.tolist() == [0, 2]
    assert frame.iloc[1][["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].tolist() == [
        47,
        23,
        441,
        202,
    ]


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_annotations(tmp_path / "nowhere")


def test_a_folder_of_no_layout_lists_the_layouts_and_their_files(tmp_path: Path) -> None:
    (tmp_path / "cars_train").mkdir()
    with pytest.raises(DataError) as raised:
        detect_layout(tmp_path)
    message = str(raised.value)
    for expected in ("devkit", "devkit/cars_meta.mat", "cars_test/", "all_in_one", "car_ims/"):
        assert expected in message
    assert "missing devkit/cars_meta.mat" in message
    assert "missing cars_test/" not in message  # the test part is optional


def test_a_devkit_copy_without_its_test_part_has_no_test_rows(tmp_path: Path) -> None:
    train = [record(f"{i:05d}.jpg", (2, 2, 40, 30), 1 + i % 2) for i in range(1, 5)]
    root = write_devkit(tmp_path / "cars", ["A", "B"], train, train[:1], test_labels=None)
    shutil.rmtree(root / "cars_test")
    (root / "devkit" / "cars_test_annos.mat").unlink()
    assert detect_layout(root) == "devkit"
    frame = read_annotations(root)
    assert frame["split"].tolist() == ["train"] * 4


def test_a_missing_field_names_the_file_and_the_field(tmp_path: Path) -> None:
    without_class = [{k: v for k, v in r.items() if k != "class"} for r in TRAIN]
    root = write_devkit(tmp_path / "cars", NAMES, without_class, TEST)
    with pytest.raises(DataError, match=r"cars_train_annos\.mat.*'class'"):
        read_annotations(root)


def test_a_class_out_of_range_names_file_row_value_and_range(tmp_path: Path) -> None:
    train = [TRAIN[0], record("00002.jpg", (1, 1, 10, 10), 4)]
    root = write_devkit(tmp_path / "cars", NAMES, train, TEST)
    with pytest.raises(DataError) as raised:
        read_annotations(root)
    message = str(raised.value)
    assert "cars_train_annos.mat" in message
    assert "record 2" in message
    assert "class 4" in message
    assert "1..3" in message


def test_a_test_label_out_of_range_is_caught_too(tmp_path: Path) -> None:
    root = write_devkit(tmp_path / "cars", NAMES, TRAIN, [record("00001.jpg", (1, 1, 5, 5), 0)])
    with pytest.raises(DataError, match=r"cars_test_annos_withlabels\.mat: record 1 has class 0"):
        read_annotations(root)
