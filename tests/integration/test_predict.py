"""What a study leaves behind, used: batch prediction on Ray Data with the sweep's best model,
that model loaded by timm alone, and the sweep's curves as TensorBoard events."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
import timm
import timm.data
import torch
from PIL import Image
from tensorboardX.proto.event_pb2 import Event

from cars.cluster.sweep import SweepOutcome
from cars.config import TrainConfig
from cars.data import CarsDataset, create_input_normalizer, read_dataset_info
from cars.learn.classifier import load_classifier
from cars.prediction.config import PredictConfig
from cars.prediction.job import run_prediction
from cars.report.scoring import create_eval_dataset, load_trial_model

pytestmark = pytest.mark.slow


@pytest.fixture
def study(smoke_sweep: SweepOutcome, smoke_report: Path) -> tuple[ray.tune.ResultGrid, Path]:
    """The session's smoke sweep (two regimes, two trials each) and its report."""
    return smoke_sweep.results, smoke_report


@pytest.fixture(scope="module")
def image_folder(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six photos in nested folders, one file that is no image, and a note that is skipped."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested" / "deeper").mkdir(parents=True)
    photos = sorted((synthetic_source / "cars_test").rglob("*.jpg"))[:6]
    for i, photo in enumerate(photos):
        target = [folder, folder / "nested", folder / "nested" / "deeper"][i % 3]
        shutil.copy(photo, target / f"car-{i}.jpg")
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _read_scalars(events: Path) -> dict[str, list[float]]:
    """Scalars of a TensorBoard event file (TFRecord framing around Event protobufs)."""
    data, position, scalars = events.read_bytes(), 0, {}
    while position < len(data):
        (length,) = struct.unpack_from("<Q", data, position)
        position += 12  # the length and its CRC
        event = Event.FromString(data[position : position + length])
        position += length + 4  # the record and its CRC
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_every_trial_writes_its_curves_for_tensorboard(
    study: tuple[ray.tune.ResultGrid, Path],
) -> None:
    results, _ = study
    assert (
        sorted(result.config["regime"] for result in results) == ["finetune"] * 2 + ["frozen"] * 2
    )
    for result in results:
        trial_dir = Path(result.path)
        assert trial_dir.name.startswith(f"{result.config['regime']}_")
        files = sorted(trial_dir.glob("events.out.tfevents.*"))
        assert files, f"no TensorBoard events in {trial_dir}"
        scalars: dict[str, list[float]] = {}
        for file in files:
            scalars |= _read_scalars(file)
        val_acc = next(v for tag, v in scalars.items() if tag.endswith("/val_acc"))
        expected = result.metrics_dataframe["val_acc"].tolist()
        assert val_acc == pytest.approx(expected, abs=1e-6)
        assert any(tag.endswith("/train_loss") for tag in scalars)


def test_best_model_loads_in_timm_alone_and_predicts_as_ours(
    study: tuple[ray.tune.ResultGrid, Path], prepared_set: Path
) -> None:
    _, report = study
    best = report / "best"
    model = timm.create_model(f"local-dir:{best}", pretrained=True).eval()
    class_names = list(read_dataset_info(prepared_set).class_names)
    assert list(model.pretrained_cfg["label_names"]) == class_names
    # timm's own preprocessing, from the folder's pretrained_cfg, on the test images.
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    dataset = CarsDataset(prepared_set, "test")
    timm_inputs = torch.stack([transform(dataset.read_image(i)) for i in range(len(dataset))])
    regimes = pd.read_parquet(report / "regimes.parquet")
    chosen = regimes[regimes["best_overall"]].iloc[0]
    config = json.loads((best / "config.json").read_text())["train_config"]
    ours = load_trial_model(chosen["checkpoint"], TrainConfig.from_dict(config), class_names)
    eval_set = create_eval_dataset(TrainConfig.from_dict(config))
    normalizer = create_input_normalizer(ours)
    # Our eval transform and device step on the same decoded images: timm's inputs.
    pixels = torch.stack([eval_set.transform(dataset.read_image(i)) for i in range(len(dataset))])
    our_inputs = normalizer(pixels, "cpu")
    torch.testing.assert_close(timm_inputs, our_inputs)
    with torch.no_grad():
        theirs_logits, our_logits = model(timm_inputs), ours(our_inputs)
    torch.testing.assert_close(theirs_logits, our_logits)
    assert torch.equal(theirs_logits.argmax(1), our_logits.argmax(1))
    # The loader decodes images much larger than the input at reduced scale (draft):
    # the same pictures, a few levels apart at these tiny sizes.
    loaded = normalizer(torch.stack([x for x, _ in eval_set]), "cpu")
    assert loaded.shape == our_inputs.shape
    assert float((loaded - our_inputs).abs().mean()) < 0.1


def test_predicting_a_folder_keeps_unreadable_files_as_error_rows(
    study: tuple[ray.tune.ResultGrid, Path], image_folder: Path, tmp_path: Path
) -> None:
    _, report = study
    out = tmp_path / "predicted"
    outcome = run_prediction(
        PredictConfig(model=str(report / "best"), images=str(image_folder), out=str(out), gradcam=3)
    )
    rows = pd.read_parquet(out / "predictions").set_index("path")
    photos = {str(p) for p in image_folder.rglob("*.jpg")}
    assert set(rows.index) == photos  # recursive, the note skipped, the broken file kept
    assert outcome.images == 7 and outcome.errors == 1 and outcome.accuracy is None
    broken = rows.loc[str(image_folder / "nested" / "broken.jpg")]
    assert "cannot decode" in broken["error"]
    assert broken["top5_classes"] is None and pd.isna(broken["pred_class"])
    good = rows.drop(index=str(image_folder / "nested" / "broken.jpg"))
    assert good["error"].isna().all()
    class_names = load_classifier(report / "best").class_names
    for _, row in good.iterrows():
        assert sorted(row["top5_classes"]) == sorted(class_names)  # 4 classes: top-4
        probs = np.asarray(row["top5_probs"])
        assert np.all(np.diff(probs) <= 0) and probs.sum() == pytest.approx(1, abs=1e-5)
        assert row["pred_class"] == row["top5_classes"][0]
        assert row["confidence"] == pytest.approx(probs[0])
    assert "label" not in rows and "correct" not in rows
    with Image.open(out / "gradcam" / "gradcam.png") as figure:
        assert figure.width >= 400
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"] == 1 and summary["images"] == 7


def test_predicting_a_prepared_split_scores_as_the_report(
    study: tuple[ray.tune.ResultGrid, Path], prepared_set: Path, tmp_path: Path
) -> None:
    _, report = study
    out = tmp_path / "test-split"
    outcome = run_prediction(
        PredictConfig(model=str(report / "best"), images=str(prepared_set), out=str(out))
    )
    regimes = pd.read_parquet(report / "regimes.parquet")
    best = regimes[regimes["best_overall"]].iloc[0]
    assert outcome.labelled == outcome.images == 16 and outcome.errors == 0
    assert outcome.accuracy == pytest.approx(best["test_acc"])
    rows = pd.read_parquet(out / "predictions")
    truth = pq.read_table(prepared_set / "test.parquet", columns=["source_file", "label"])
    expected = dict(zip(truth["source_file"].to_pylist(), truth["label"].to_pylist(), strict=True))
    assert dict(zip(rows["path"], rows["label"], strict=True)) == expected
    assert (rows["correct"] == (rows["pred_class"] == rows["true_class"])).all()
    assert rows["correct"].mean() == pytest.approx(best["test_acc"])
