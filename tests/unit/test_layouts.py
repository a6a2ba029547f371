"""Every layout a copy of Stanford Cars comes in: found at any depth, read into the
devkit's classes. Copies are written with real JPEG bytes, CSV, Parquet and a
dataset card (``copy_files``), from the same records as a devkit copy."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from copy_files import (
    IMAGE_CLASSES,
    folder_of,
    official_records,
    write_bare_folders,
    write_class_folders,
    write_devkit_beside_images,
    write_hf_parquet,
    write_kaggle_copy,
    write_sorted_card_export,
)
from stanford_files import write_all_in_one, write_devkit

from cars.data import DataError, detect_layout, read_annotations, read_source
from cars.data.class_order import OFFICIAL_CLASS_NAMES

OFFICIAL = list(OFFICIAL_CLASS_NAMES)
BOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]


def test_the_official_names_are_the_devkits_196_in_its_order() -> None:
    assert len(OFFICIAL) == len(set(OFFICIAL)) == 196
    assert OFFICIAL[:3] == [
        "AM General Hummer SUV 2000",
        "Acura RL Sedan 2012",
        "Acura TL Sedan 2012",
    ]
    assert OFFICIAL[173] == "Ram C/V Cargo Van Minivan 2012"
    assert OFFICIAL[195] == "smart fortwo Convertible 2012"
    assert [name for name in OFFICIAL if "/" in name] == ["Ram C/V Cargo Van Minivan 2012"]
    # The list as checked against three public copies of cars_meta.mat's class_names:
    # any edit to it (a swap, a typo) changes every copy's labels.
    digest = hashlib.sha256("\n".join(OFFICIAL).encode()).hexdigest()
    assert digest == "93d089469409bbd00725ce041797cad929e156fba50c3e19a0f49ef65efcb990"


def _devkit(root: Path) -> Path:
    return write_devkit(root, OFFICIAL, *official_records())


def _all_in_one(root: Path) -> Path:
    train, test = official_records()
    records = [
        {"relative_im_path": f"car_ims/{i:06d}.jpg"}
        | {k: r[k] for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")}
        | {"test": int(i > len(train))}
        for i, r in enumerate([*train, *test], start=1)
    ]
    write_all_in_one(root / "archive", OFFICIAL, records)
    return root


def _kaggle(root: Path) -> Path:
    return write_kaggle_copy(root, OFFICIAL)


def _bare_folders(root: Path) -> Path:
    return write_bare_folders(root, OFFICIAL)


def _hub(root: Path) -> Path:
    write_hf_parquet(root / "snapshot", OFFICIAL, *official_records())
    return root


def _devkit_beside(root: Path) -> Path:
    return write_devkit_beside_images(root, OFFICIAL)


def _hub_sorted_card(root: Path) -> Path:
    return write_sorted_card_export(root, OFFICIAL)


COPIES = {
    # name: (write, layout, where it is found)
    "devkit": (_devkit, "devkit", "."),
    "devkit_files_beside_images": (_devkit_beside, "devkit", "stanford_cars"),
    "all_in_one": (_all_in_one, "all_in_one", "archive"),
    "kaggle": (_kaggle, "class_folders", "car_data/car_data"),
    "bare_folders": (_bare_folders, "class_folders", "car_data/car_data"),
    "hub": (_hub, "hf_parquet", "snapshot"),
    "hub_sorted_card": (_hub_sorted_card, "hf_parquet", "."),
}


def _labels_by_image(frame: pd.DataFrame) -> dict[tuple[str, int], tuple[int, str]]:
    """(split, place in the split's records) -> (label, class name), by file name order.

    A Parquet row ``#i`` holds the split's (i + 1)-th image, as its records do.
    """
    row_names = frame.source_file.str.replace(
        r"#(\d+)$", lambda m: f"/{int(m[1]) + 1:05d}.jpg", regex=True
    )
    named = frame.assign(name=row_names.str.rsplit("/", n=1).str[-1])
    out = {}
    for split, rows in named.groupby("split"):
        for i, row in enumerate(rows.sort_values("name").itertuples()):
            out[(split, i)] = (row.label, row.class_name)
    return out


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_each_layout_is_found_named_and_read_into_the_devkits_classes(
    tmp_path: Path, copy: str
) -> None:
    write, layout, found_at = COPIES[copy]
    source = write(tmp_path / "copy")
    reference = read_annotations(_devkit(tmp_path / "reference"))
    assert detect_layout(source) == layout
    read = read_source(source)
    assert read.copy.layout == layout and read.copy.found_at == found_at
    assert read.class_names == OFFICIAL_CLASS_NAMES and read.order.official
    assert _labels_by_image(read.records) == _labels_by_image(reference)
    ram = read.records[read.records.label == 173]
    assert len(ram) == 4 and set(ram.class_name) == {"Ram C/V Cargo Van Minivan 2012"}
    assert all((source / f).is_file() for f in read.records.source_file if "#" not in f)


def test_boxes_from_the_annotation_files_are_the_devkits(tmp_path: Path) -> None:
    reference = read_annotations(_devkit(tmp_path / "reference"))
    kaggle = read_annotations(_kaggle(tmp_path / "kaggle"))
    key = ["split", "name"]
    for frame in (reference, kaggle):
        frame["name"] = frame.source_file.str.rsplit("/", n=1).str[-1]
    merged = reference.merge(kaggle, on=key, suffixes=("", "_copy"))
    assert len(merged) == len(reference) == 16
    for column in BOX_COLUMNS:
        assert (merged[column] == merged[f"{column}_copy"]).all()
    assert merged.iloc[0][BOX_COLUMNS].tolist() != [None] * 4
    bare = read_annotations(_bare_folders(tmp_path / "bare"))
    assert bare[BOX_COLUMNS].isna().all(axis=None)


def test_a_slash_in_a_class_name_is_a_dash_in_its_folder(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "kaggle")
    folder = source / "car_data" / "car_data" / "train" / "Ram C-V Cargo Van Minivan 2012"
    assert folder.is_dir() and len(list(folder.iterdir())) == 3
    records = read_annotations(source).set_index("source_file")
    row = records.loc[f"car_data/car_data/train/{folder.name}/00006.jpg"]
    assert (row.label, row.class_name) == (173, "Ram C/V Cargo Van Minivan 2012")


def test_another_data_sets_class_folders_keep_their_classes_in_sorted_order(
    tmp_path: Path,
) -> None:
    planes = ["Cessna 172", "Airbus A320", "Boeing 737-800"]
    train, test = official_records()
    train = [r | {"class": 1 + i % 3} for i, r in enumerate(train)]
    test = [r | {"class": 1 + i % 3} for i, r in enumerate(test)]
    source = write_class_folders(
        tmp_path / "planes", planes, train, test, wrap=(), names_file=False, annotations=False
    )
    read = read_source(source)
    assert read.class_names == ("Airbus A320", "Boeing 737-800", "Cessna 172")
    assert read.order.order == "sorted" and not read.order.official
    assert "none is a Stanford Cars class name" in read.order.note
    labels = read.records.set_index("source_file").label
    assert labels["train/Cessna 172/00004.jpg"] == 2
    assert labels["train/Boeing 737-800/00003.jpg"] == 1
    assert labels["test/Airbus A320/00002.jpg"] == 0


def test_a_folder_name_missing_from_the_official_list_is_named_and_order_is_sorted(
    tmp_path: Path,
) -> None:
    renamed = {"Acura RL Sedan 2012": "Acura RL Sedan 2013"}
    source = write_bare_folders(tmp_path / "cars", OFFICIAL, folder_names=renamed)
    read = read_source(source)
    expected = sorted(renamed.get(name, folder_of(name)) for name in OFFICIAL)
    assert list(read.class_names) == expected and read.order.order == "sorted"
    assert "195 of 196 are Stanford Cars class names, not 'Acura RL Sedan 2013'" in read.order.note
    assert "(closest official name: 'Acura RL Sedan 2012')" in read.order.note
    rows = read.records
    acura = rows[rows.source_file.str.contains("/Acura RL Sedan 2013/")]
    assert set(acura.class_name) == {"Acura RL Sedan 2013"} and len(acura) == 4
    ram = rows[rows.source_file.str.contains("/Ram C-V")]
    assert set(ram.class_name) == {"Ram C-V Cargo Van Minivan 2012"}


def test_a_subset_of_the_official_classes_is_not_renumbered(tmp_path: Path) -> None:
    few = [OFFICIAL[i - 1] for i in IMAGE_CLASSES]
    train, test = official_records()
    index = {c: i + 1 for i, c in enumerate(IMAGE_CLASSES)}
    train = [r | {"class": index[int(r["class"])]} for r in train]
    test = [r | {"class": index[int(r["class"])]} for r in test]
    source = write_class_folders(tmp_path / "few", few, train, test, names_file=False)
    read = read_source(source)
    assert read.class_names == tuple(sorted(folder_of(n) for n in few))
    assert "4 of Stanford Cars' 196 classes only" in read.order.note


def test_names_csv_names_and_numbers_the_classes(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "kaggle")
    names = (source / "names.csv").read_text().splitlines()
    (source / "names.csv").write_text("\n".join(names[:-1]) + "\n")  # one class left out
    with pytest.raises(
        DataError, match=r"class folder 'smart fortwo Convertible 2012'.*names\.csv"
    ):
        read_source(source)


def test_devkit_test_labels_from_beside_the_images_from_devkit_or_named(tmp_path: Path) -> None:
    for place in ("root", "devkit"):
        copy = write_devkit(tmp_path / place, OFFICIAL, *official_records(), test_labels=place)
        test = read_annotations(copy).query("split == 'test'")
        assert (test.label >= 0).all()
    copy = write_devkit(tmp_path / "apart", OFFICIAL, *official_records())
    labels = tmp_path / "downloads" / "cars_test_annos_withlabels.mat"
    labels.parent.mkdir()
    (copy / labels.name).rename(labels)
    unlabelled = read_source(copy)
    assert (unlabelled.records.query("split == 'test'").label == -1).all()
    assert any("--test-labels FILE" in note for note in unlabelled.copy.notes)
    named = read_source(copy, test_labels=labels)
    assert named.records.query("split == 'test'").label.tolist() == [1, 173, 195, 0]
    with pytest.raises(DataError, match="is for the devkit layout"):
        read_source(_kaggle(tmp_path / "kaggle"), test_labels=labels)


def test_a_folder_of_no_layout_lists_every_layout_and_the_closest_miss(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "wrapped" / "cars_train").mkdir(parents=True)
    with pytest.raises(DataError) as raised:
        detect_layout(tmp_path)
    message = str(raised.value)
    assert "matches no Stanford Cars layout" in message
    for layout in ("devkit", "all_in_one", "class_folders", "hf_parquet"):
        assert f"{layout}: " in message
    for need in ("train/<class name>/*.jpg", "data/train-*.parquet", "names.csv", "car_ims/"):
        assert need in message
    assert "In wrapped: the devkit layout lacks devkit/cars_meta.mat" in message


def test_two_copies_at_one_depth_are_an_error_and_the_shallowest_copy_is_read(
    tmp_path: Path,
) -> None:
    _kaggle(tmp_path / "a")  # a/car_data/car_data: three levels down
    _bare_folders(tmp_path / "b" / "c")  # b/c/car_data/car_data: four
    assert read_source(tmp_path).copy.found_at == "a/car_data/car_data"
    _hub(tmp_path / "d" / "e")  # d/e/snapshot: three, as a's
    with pytest.raises(DataError) as raised:
        detect_layout(tmp_path)
    message = str(raised.value)
    assert "several copies at the same depth: a/car_data/car_data (class_folders); " in message
    assert "d/e/snapshot (hf_parquet); point --source at the one to prepare" in message


def test_one_folder_with_two_layouts_reads_the_devkit_unless_told(tmp_path: Path) -> None:
    source = _devkit(tmp_path / "both")
    all_in_one = _all_in_one(tmp_path / "other") / "archive"
    for entry in all_in_one.iterdir():
        shutil.move(entry, source / entry.name)
    read = read_source(source)
    assert read.copy.layout == "devkit"
    assert "also holds the all_in_one layout (--layout all_in_one" in " ".join(read.copy.notes)
    assert read_source(source, layout="all_in_one").copy.layout == "all_in_one"
    with pytest.raises(DataError, match="matches no hf_parquet layout"):
        read_source(source, layout="hf_parquet")
    with pytest.raises(DataError, match="layout='folders' is not valid"):
        read_source(source, layout="folders")


def test_a_dataset_card_without_class_names_is_named(tmp_path: Path) -> None:
    card = _hub(tmp_path) / "snapshot" / "README.md"
    card.write_text(card.read_text().replace("class_label", "klass"))
    with pytest.raises(DataError, match=r"README\.md names no classes for the 'label' column"):
        read_source(tmp_path)
    card.unlink()
    with pytest.raises(DataError, match=r"no dataset card README\.md"):
        read_source(tmp_path)


def test_a_parquet_file_without_labels_is_named(tmp_path: Path) -> None:
    file = _hub(tmp_path) / "snapshot" / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(file)
    pq.write_table(table.drop_columns(["label"]).append_column("y", pa.array([0] * 12)), file)
    with pytest.raises(DataError, match=r"train-00000-of-00001\.parquet has no integer 'label'"):
        read_source(tmp_path)


def test_a_malformed_annotation_line_is_named(tmp_path: Path) -> None:
    source = _kaggle(tmp_path)
    lines = (source / "anno_test.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]
    (source / "anno_test.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"anno_test\.csv: line 3 has 5 fields; expected 6"):
        read_source(tmp_path)
