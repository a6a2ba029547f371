"""Batch prediction's parts without Ray: loading any model folder, the two map_batches
stages on real JPEG bytes, the actor pool's size, and the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.models._hub import save_for_hf

from cars.cli import exit_on_user_error, parse_predict_args
from cars.cluster.resources import ResourceError
from cars.data import CarsDataset, DataError, create_transform_for, read_dataset_info
from cars.data.readers import BBOX_FIELDS
from cars.learn.checkpoint import WeightsError, save_best_weights, save_checkpoint
from cars.learn.classifier import load_classifier
from cars.learn.model import build_model
from cars.paths import PROJECT_ROOT
from cars.prediction.inputs import resolve_image_source
from cars.prediction.job import plan_actor_pool
from cars.prediction.stages import BatchClassifier, classifier_input, decode_batch
from cars.report.scoring import predict

CLASSES = ["coupe", "sedan", "van"]


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model("scratch", len(CLASSES)).eval()


@pytest.fixture(scope="module")
def best(trained: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "best"
    return save_best_weights(folder, trained, {"image_size": 40, "regime": "scratch"}, CLASSES)


def _logits(model: torch.nn.Module, size: int = 40) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, size, size))


def test_a_best_folder_loads_with_its_classes_and_input(
    best: Path, trained: torch.nn.Module
) -> None:
    classifier = load_classifier(best)
    assert classifier.class_names == CLASSES
    assert classifier.data_config["input_size"] == (3, 40, 40)
    assert classifier.data_config["mean"] == [0.5, 0.5, 0.5]
    torch.testing.assert_close(_logits(classifier.model), _logits(trained))


def test_a_checkpoint_and_an_earlier_best_folder_load_alike(
    trained: torch.nn.Module, tmp_path: Path
) -> None:
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    config = {"image_size": 48, "regime": "scratch"}
    save_checkpoint(tmp_path / "ckpt", model=trained, optimizer=optimizer, scheduler=None,
                    epoch=1, config=config, class_names=CLASSES, metrics={})  # fmt: skip
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    safetensors.torch.save_file(dict(trained.state_dict()), earlier / "model.safetensors")
    description = {"architecture": "legacy_xception", "class_names": CLASSES, "config": config}
    (earlier / "config.json").write_text(json.dumps(description))
    for source in (tmp_path / "ckpt", tmp_path / "ckpt" / "checkpoint.pt", earlier):
        classifier = load_classifier(source)
        assert classifier.class_names == CLASSES
        assert classifier.image_size == 48
        torch.testing.assert_close(_logits(classifier.model), _logits(trained))


def test_any_folder_timm_writes_loads_even_without_class_names(tmp_path: Path) -> None:
    other = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    save_for_hf(other, str(tmp_path / "resnet"), safe_serialization=True)
    classifier = load_classifier(tmp_path / "resnet")
    assert classifier.class_names == ["0", "1", "2"]
    assert classifier.data_config["input_size"] == other.pretrained_cfg["input_size"]
    torch.testing.assert_close(_logits(classifier.model, 64), _logits(other, 64))


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_classifier(tmp_path / "nowhere")
    with pytest.raises(WeightsError, match=r"holds no config\.json"):
        load_classifier(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="no pretrained_cfg"):
        load_classifier(tmp_path)


def _split_batch(prepared_set: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(prepared_set / "test.parquet").to_pandas()
    batch = {name: table[name].to_numpy() for name in ("label", *BBOX_FIELDS)}
    batch["path"] = table["source_file"].to_numpy()
    batch["bytes"] = table["image"].to_numpy().copy()
    return batch


def test_the_stages_answer_as_the_reports_scoring(
    prepared_set: Path, trained: torch.nn.Module, tmp_path: Path
) -> None:
    names = list(read_dataset_info(prepared_set).class_names)
    torch.manual_seed(3)
    model = build_model("scratch", len(names)).eval()
    folder = save_best_weights(tmp_path / "best", model, {"image_size": 32}, names)
    classifier = load_classifier(folder)
    batch = _split_batch(prepared_set)
    batch["bytes"][2] = batch["bytes"][2][:40]  # a truncated JPEG
    decoded = decode_batch(batch, classifier_input(classifier))
    assert decoded["image"].shape == (16, 3, 32, 32)
    assert [e is not None for e in decoded["error"]] == [i == 2 for i in range(16)]
    rows = BatchClassifier(str(folder), use_gpu=False, threads=1, true_class_names=names)(decoded)
    table = rows.to_pandas()
    assert table["error"].notna().tolist() == [i == 2 for i in range(16)]
    assert table.loc[2, "top5_classes"] is None and table.loc[2, "correct"] is None
    # Between fused stages Ray Data hands a column of nulls over as NaNs.
    nulls = {**decoded, "error": np.full(16, np.nan, dtype=np.float32)}
    classifier_rows = BatchClassifier(str(folder), use_gpu=False, threads=1)(nulls).to_pandas()
    assert classifier_rows["error"].isna().all() and classifier_rows["pred_class"].notna().all()
    dataset = CarsDataset(prepared_set, "test", create_transform_for("none", 32, is_training=False))
    reference = predict(model, dataset, torch.device("cpu"))
    ok = table["error"].isna().to_numpy()
    expected = np.array([names[i] for i in reference.argmax(1)], dtype=object)
    assert table.loc[ok, "pred_class"].tolist() == expected[ok].tolist()
    np.testing.assert_allclose(table.loc[ok, "confidence"], reference.max(1)[ok], rtol=1e-6)
    truth = np.array([names[label] for label in batch["label"]], dtype=object)
    assert table["true_class"].tolist() == truth.tolist()
    assert table.loc[ok, "correct"].tolist() == (expected == truth)[ok].tolist()


def test_a_model_trained_on_box_crops_sees_box_crops(prepared_set: Path, tmp_path: Path) -> None:
    names = list(read_dataset_info(prepared_set).class_names)
    model = build_model("scratch", len(names)).eval()
    config = {"image_size": 32, "bbox_crop": True, "bbox_margin": 0.1}
    classifier = load_classifier(save_best_weights(tmp_path / "best", model, config, names))
    decoded = decode_batch(_split_batch(prepared_set), classifier_input(classifier))
    dataset = CarsDataset(
        prepared_set,
        "test",
        create_transform_for("none", 32, is_training=False),
        bbox_crop=True,
        bbox_margin=0.1,
    )
    np.testing.assert_array_equal(decoded["image"][0], dataset[0][0].numpy())


def test_the_actor_pool_follows_the_cluster() -> None:
    assert plan_actor_pool({"CPU": 2}, use_gpu=False, cpus_per_actor=1) == 1
    assert plan_actor_pool({"CPU": 16}, use_gpu=False, cpus_per_actor=4) == 3
    assert plan_actor_pool({"CPU": 64, "GPU": 8}, use_gpu=True, cpus_per_actor=1) == 8
    with pytest.raises(ResourceError, match="no GPU"):
        plan_actor_pool({"CPU": 8}, use_gpu=True, cpus_per_actor=1)
    with pytest.raises(ResourceError, match="lower --cpus-per-actor"):
        plan_actor_pool({"CPU": 2}, use_gpu=False, cpus_per_actor=4)


def test_images_name_a_folder_a_prepared_split_or_nothing_usable(
    prepared_set: Path, tmp_path: Path
) -> None:
    source = resolve_image_source(str(prepared_set), "val")
    assert source.split == "val" and source.has_labels
    assert source.class_names == read_dataset_info(prepared_set).class_names
    assert resolve_image_source(str(prepared_set)).split == "test"
    photos = tmp_path / "photos"
    (photos / "deep").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        resolve_image_source(str(photos))
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    (photos / "deep" / "a.PNG").write_bytes(image.getvalue())
    assert not resolve_image_source(str(photos)).has_labels
    with pytest.raises(DataError, match="drop --split"):
        resolve_image_source(str(photos), "test")
    with pytest.raises(DataError, match="not a folder"):
        resolve_image_source(str(tmp_path / "nowhere"))


def test_predict_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_predict_args(
        ["--model", "reports/x/best", "--images", "s3://bucket/photos", "--out", "out",
         "--gpu", "--gradcam", "4", "--batch-size", "64"]
    )  # fmt: skip
    assert config.model == str(PROJECT_ROOT / "reports" / "x" / "best")
    assert config.images == "s3://bucket/photos" and config.out == str(PROJECT_ROOT / "out")
    assert config.use_gpu and config.gradcam == 4 and config.batch_size == 64
    assert config.split is None
    split = parse_predict_args(["--model", "m", "--images", "d", "--out", "o", "--split", "val"])
    assert split.split == "val" and not split.use_gpu
    with pytest.raises(SystemExit) as exited, exit_on_user_error():
        parse_predict_args(["--model", "m", "--images", "d", "--out", "o", "--batch-size", "0"])
    assert exited.value.code == 2
    assert "batch_size=0" in capsys.readouterr().err
