"""Reading a prepared set for training: dataset.json, the torch Dataset, URIs, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cars.data import (
    CarsDataset,
    DataError,
    create_transform_for,
    expand_box,
    read_annotations,
    read_dataset_info,
)


def test_dataset_info_describes_the_set(prepared_set: Path) -> None:
    info = read_dataset_info(str(prepared_set))
    assert info.num_classes == 4
    assert info.class_names[0].startswith("Synthetic ")
    for split in ("train", "val", "test"):
        dataset = CarsDataset(str(prepared_set), split)
        assert len(dataset) == info.counts[split]
        assert np.bincount(dataset.labels, minlength=4).tolist() == list(info.class_counts[split])


def test_items_are_uint8_tensors_and_labels(prepared_set: Path) -> None:
    transform = create_transform_for("basic", 64, is_training=True)
    dataset = CarsDataset(str(prepared_set), "train", transform)
    image, label = dataset[3]
    # uint8 pixels: the device normalises them (cars.data.normalize).
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert 0 <= image.min() < image.max() <= 255
    assert label == dataset.labels[3] and isinstance(label, int)
    batch, labels = next(iter(DataLoader(dataset, batch_size=8)))
    assert batch.shape == (8, 3, 64, 64) and labels.tolist() == dataset.labels[:8].tolist()


def test_without_a_transform_items_are_rgb_images_of_the_stored_size(prepared_set: Path) -> None:
    dataset = CarsDataset(str(prepared_set), "val")
    image, _ = dataset[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == tuple(dataset.sizes[0])


def test_bbox_crop_cuts_the_enlarged_box(prepared_set: Path, synthetic_source: Path) -> None:
    plain = CarsDataset(str(prepared_set), "test")
    cropped = CarsDataset(str(prepared_set), "test", bbox_crop=True, bbox_margin=0.1)
    box_areas = np.prod(plain.boxes[:, 2:] - plain.boxes[:, :2], axis=1)
    i = int(np.argmin(box_areas / np.prod(plain.sizes, axis=1)))  # the smallest car
    full, label, box = plain.read_record(i)
    assert (label, box) == (int(plain.labels[i]), plain.box(i))
    annotations = read_annotations(synthetic_source).set_index("source_file")
    row = annotations.loc[plain.source_files[i]]
    assert box == (row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2)
    crop_box = expand_box(box, *full.size, 0.1)
    image, _ = cropped[i]
    assert image.size == (crop_box[2] - crop_box[0], crop_box[3] - crop_box[1])
    assert image.size[0] * image.size[1] < full.size[0] * full.size[1]
    assert np.array_equal(np.asarray(image), np.asarray(full.crop(crop_box)))


def test_a_set_is_read_from_a_uri(prepared_set: Path) -> None:
    uri = prepared_set.as_uri()
    assert uri.startswith("file://")
    assert read_dataset_info(uri).counts["test"] == 16
    local, remote = CarsDataset(str(prepared_set), "test"), CarsDataset(uri, "test")
    assert np.array_equal(np.asarray(local[5][0]), np.asarray(remote[5][0]))


def test_pickling_leaves_the_images_behind(prepared_set: Path) -> None:
    dataset = CarsDataset(str(prepared_set), "train")
    dataset[0]  # loads the image column
    image_bytes = (prepared_set / "train.parquet").stat().st_size
    data = pickle.dumps(dataset)
    assert len(data) < image_bytes / 10
    copy = pickle.loads(data)
    assert np.array_equal(np.asarray(copy[7][0]), np.asarray(dataset[7][0]))


def test_loader_worker_processes_read_the_set(prepared_set: Path) -> None:
    transform = create_transform_for("none", 48, is_training=False)
    dataset = CarsDataset(str(prepared_set), "val", transform)
    loader = DataLoader(dataset, batch_size=6, num_workers=2)
    labels = torch.cat([labels for _, labels in loader])
    assert labels.tolist() == dataset.labels.tolist()


def test_a_folder_that_is_not_a_set_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*jobs/prepare\.py"):
        read_dataset_info(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"dataset\.json is missing.*jobs/prepare\.py"):
        read_dataset_info(str(tmp_path))
    with pytest.raises(DataError, match=r"train\.parquet is missing.*jobs/prepare\.py"):
        CarsDataset(str(tmp_path), "train")


def test_a_bad_split_or_dataset_json_is_named(prepared_set: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split='validation'"):
        CarsDataset(str(prepared_set), "validation")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_dataset_info(str(tmp_path))


def test_the_source_set_has_other_classes_for_pretraining(
    prepared_set: Path, prepared_source_set: Path
) -> None:
    target, source = read_dataset_info(prepared_set), read_dataset_info(prepared_source_set)
    assert source.num_classes == target.num_classes == 4
    assert not set(source.class_names) & set(target.class_names)
    assert source.generator is not None and source.generator["task"] == "source"
    assert dict(source.counts) == {"train": 36, "val": 12, "test": 16}


def test_bbox_crop_through_a_transform_is_the_crop_then_the_transform(
    prepared_set: Path,
) -> None:
    transform = create_transform_for("none", 32, is_training=False)
    plain = CarsDataset(str(prepared_set), "test")
    cropped = CarsDataset(str(prepared_set), "test", transform, bbox_crop=True, bbox_margin=0.1)
    for i in range(4):
        full, _, box = plain.read_record(i)
        expected = transform(full.crop(expand_box(box, *full.size, 0.1)))
        # Decoding at reduced scale (libjpeg's DCT scaling) changes pixels of these noisy
        # 32 px inputs by some levels, never the picture: same shape, highly correlated.
        got = cropped[i][0]
        assert got.shape == expected.shape
        assert (got.float() - expected.float()).abs().mean() < 16
        correlation = np.corrcoef(got.flatten().numpy(), expected.flatten().numpy())[0, 1]
        assert correlation > 0.85, correlation
