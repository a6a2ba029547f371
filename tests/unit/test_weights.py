"""Starting weights from every source that works offline, the project's checkpoint files,
and clear errors for everything else (including ImageNet, which cannot download here)."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.fs
import pytest
import safetensors.torch
import timm
import torch
from torch import nn

from cars.config import TrainConfig
from cars.learn.checkpoint import (
    WeightsError,
    load_checkpoint,
    save_best_weights,
    save_checkpoint,
    to_plain,
)
from cars.learn.model import build_model
from cars.learn.optim import create_optimizer, create_scheduler
from cars.learn.weights import read_weights
from cars.storage import join_path

SOURCE_CLASSES = [f"source-{i}" for i in range(5)]


@pytest.fixture(scope="module")
def source() -> nn.Module:
    """A 5-class legacy_xception whose weights differ from any fresh init."""
    torch.manual_seed(123)
    model = timm.create_model("legacy_xception", num_classes=len(SOURCE_CLASSES))
    with torch.no_grad():
        model.bn4.running_mean.uniform_(-1, 1)
    return model


def _backbone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _assert_same_backbone(model: nn.Module, source: nn.Module) -> None:
    ours, theirs = _backbone(model), _backbone(source)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def _assert_same_head(model: nn.Module, source: nn.Module) -> None:
    assert torch.equal(model.fc.weight, source.fc.weight)
    assert torch.equal(model.fc.bias, source.fc.bias)


@pytest.mark.parametrize("wrap", ["plain", "ddp"])
def test_pth_state_dict_loads_plain_or_wrapped_by_ddp(
    tmp_path: Path, source: nn.Module, wrap: str
) -> None:
    state = source.state_dict()
    if wrap == "ddp":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "xception.pth"
    torch.save(state, path)
    model = build_model("finetune", 5, weights=path)
    _assert_same_backbone(model, source)
    _assert_same_head(model, source)


def test_safetensors_file_loads(tmp_path: Path, source: nn.Module) -> None:
    path = tmp_path / "xception.safetensors"
    safetensors.torch.save_file(source.state_dict(), path)
    model = build_model("frozen", 5, weights=str(path))
    _assert_same_backbone(model, source)


@pytest.fixture(scope="module")
def checkpoint(source: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project checkpoint of ``source`` after one optimizer and scheduler step."""
    config = TrainConfig(data="prepared", regime="scratch", epochs=2, weight_decay=0.0)
    optimizer = create_optimizer(source, config)
    scheduler = create_scheduler(optimizer, config, steps_per_epoch=3)
    # Zero gradients on the head only: real optimizer state, unchanged weights.
    for param in source.fc.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    scheduler.step()
    source.zero_grad(set_to_none=True)
    return save_checkpoint(
        tmp_path_factory.mktemp("run") / "ckpt",
        model=torch.compile(source),  # wrapped, as the Ray glue may pass it
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=1,
        config=config.to_dict(),
        class_names=SOURCE_CLASSES,
        metrics={"val_acc": np.float64(0.25), "images": np.int64(12), "shape": (1, 2)},
    )


def test_project_checkpoint_round_trips_with_weights_only(
    checkpoint: Path, source: nn.Module
) -> None:
    assert checkpoint.name == "checkpoint.pt"
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint.pt"]
    for where in (checkpoint.parent, checkpoint):
        state = load_checkpoint(where)
        assert state["epoch"] == 1
        assert state["class_names"] == SOURCE_CLASSES
        assert state["config"]["regime"] == "scratch"
        assert state["metrics"] == {"val_acc": 0.25, "images": 12, "shape": [1, 2]}
        assert type(state["metrics"]["val_acc"]) is float
        assert state["scheduler"]["last_epoch"] == 1
        assert not any(k.startswith("_orig_mod") for k in state["model"])
    # It restores into a fresh optimizer and scheduler, as a resumed run does.
    config = TrainConfig(data="prepared", regime="scratch", epochs=2, weight_decay=0.0)
    optimizer = create_optimizer(source, config)
    optimizer.load_state_dict(state["optimizer"])
    scheduler = create_scheduler(optimizer, config, 3)
    scheduler.load_state_dict(state["scheduler"])
    assert len(optimizer.state) == 2
    assert scheduler.last_epoch == 1


def test_checkpoint_of_another_class_count_gets_a_new_head_and_says_so(
    checkpoint: Path, source: nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    # The demo's path: a source-task run's checkpoint starts the 196-class study.
    with caplog.at_level(logging.WARNING, logger="cars.learn.weights"):
        model = build_model("finetune", 196, 1, weights=checkpoint.parent)
    _assert_same_backbone(model, source)
    assert model.fc.weight.shape == (196, 2048)
    assert "5-class head" in caplog.text
    assert "196-class head" in caplog.text


@pytest.mark.parametrize("as_file", [False, True])
def test_project_checkpoint_loads_as_weights(
    checkpoint: Path, source: nn.Module, as_file: bool
) -> None:
    model = build_model("finetune", 5, 3, weights=checkpoint if as_file else checkpoint.parent)
    _assert_same_backbone(model, source)
    _assert_same_head(model, source)


def test_checkpoint_and_best_folder_load_from_s3(
    checkpoint: Path, source: nn.Module, s3_bucket: str, tmp_path: Path
) -> None:
    # Every form is read from S3 on a small timm network (reading a state dict does not
    # depend on its architecture), and build_model downloads the Xception once: its
    # 88 MB through the local S3 server are most of the test's time.
    torch.manual_seed(5)
    small = timm.create_model("test_resnet", num_classes=len(SOURCE_CLASSES))
    run = join_path(s3_bucket, "runs", "train-1")
    config = TrainConfig(data="prepared", regime="scratch", image_size=32).to_dict()
    small_checkpoint = save_checkpoint(
        tmp_path / "small",
        model=small,
        optimizer=torch.optim.SGD(small.parameters(), lr=0.1),
        scheduler=None,
        epoch=1,
        config=config,
        class_names=SOURCE_CLASSES,
        metrics={"val_acc": 0.5},
    )
    pyarrow.fs.copy_files(str(small_checkpoint.parent), join_path(run, "epoch-0001"))
    best = save_best_weights(tmp_path / "best", small, config, SOURCE_CLASSES)
    pyarrow.fs.copy_files(str(best), join_path(run, "best"))
    pyarrow.fs.copy_files(str(checkpoint.parent), join_path(run, "epoch-0002"))
    assert load_checkpoint(join_path(run, "epoch-0001"))["class_names"] == SOURCE_CLASSES
    expected = small.state_dict()
    for where in ("epoch-0001", "epoch-0001/checkpoint.pt", "best"):
        weights = read_weights(join_path(run, where))
        assert weights.path.startswith(f"{run}/{where}")
        assert weights.class_names == SOURCE_CLASSES
        assert weights.state_dict.keys() == expected.keys()
        assert all(torch.equal(weights.state_dict[k], v) for k, v in expected.items())
    # And build_model takes a URI itself.
    model = build_model("finetune", 5, 3, weights=join_path(run, "epoch-0002"))
    _assert_same_backbone(model, source)
    _assert_same_head(model, source)
    with pytest.raises(WeightsError, match=f"no project checkpoint at {run}/epoch-0009"):
        load_checkpoint(join_path(run, "epoch-0009"))
    with pytest.raises(WeightsError, match=f"weights file {run}/nowhere.pth does not exist"):
        read_weights(join_path(run, "nowhere.pth"))


def test_checkpoint_of_other_classes_gets_a_fresh_head(
    checkpoint: Path, source: nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    others = [f"target-{i}" for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="cars.learn.weights"):
        model = build_model("frozen", 5, weights=checkpoint, class_names=others)
    _assert_same_backbone(model, source)
    assert not torch.equal(model.fc.weight, source.fc.weight)
    assert "other classes" in caplog.text
    same = build_model("frozen", 5, weights=checkpoint, class_names=SOURCE_CLASSES)
    _assert_same_head(same, source)


def test_best_folder_holds_safetensors_and_config_and_loads(
    tmp_path: Path, source: nn.Module
) -> None:
    folder = save_best_weights(
        tmp_path / "best", source, {"lr": 0.01, "image_size": 48}, SOURCE_CLASSES
    )
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    description = json.loads((folder / "config.json").read_text())
    assert description["architecture"] == "legacy_xception"
    assert description["num_classes"] == 5
    assert description["label_names"] == SOURCE_CLASSES
    pretrained_cfg = description["pretrained_cfg"]
    assert pretrained_cfg["input_size"] == [3, 48, 48]
    assert pretrained_cfg["mean"] == pretrained_cfg["std"] == [0.5, 0.5, 0.5]
    assert pretrained_cfg["interpolation"] == "bicubic"
    assert pretrained_cfg["crop_pct"] == timm.get_pretrained_cfg("legacy_xception").crop_pct
    assert description["train_config"] == {"lr": 0.01, "image_size": 48}
    assert read_weights(folder).class_names == SOURCE_CLASSES
    model = build_model("finetune", 5, weights=folder, class_names=SOURCE_CLASSES)
    _assert_same_backbone(model, source)
    _assert_same_head(model, source)


def test_best_folder_loads_in_timm_alone_with_its_class_names(
    tmp_path: Path, source: nn.Module
) -> None:
    frozen = build_model("frozen", 5, class_names=SOURCE_CLASSES)
    frozen.load_state_dict(source.state_dict())
    folder = save_best_weights(tmp_path / "best", frozen, {"image_size": 40}, SOURCE_CLASSES)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert loaded.pretrained_cfg["label_names"] == SOURCE_CLASSES
    assert timm.data.resolve_data_config({}, model=loaded)["input_size"] == (3, 40, 40)
    inputs = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), source.eval()(inputs))


def test_best_folder_of_the_earlier_layout_still_loads(tmp_path: Path, source: nn.Module) -> None:
    folder = tmp_path / "best"
    folder.mkdir()
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()},
        folder / "model.safetensors",
    )
    earlier = {
        "architecture": "legacy_xception",
        "num_classes": 5,
        "class_names": SOURCE_CLASSES,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "config": {"regime": "finetune", "image_size": 64},
    }
    (folder / "config.json").write_text(json.dumps(earlier))
    assert read_weights(folder).class_names == SOURCE_CLASSES
    model = build_model("finetune", 5, weights=folder, class_names=SOURCE_CLASSES)
    _assert_same_backbone(model, source)
    _assert_same_head(model, source)


def test_best_folder_refuses_mismatched_class_names(tmp_path: Path, source: nn.Module) -> None:
    with pytest.raises(WeightsError, match="5-class head but 2 class names"):
        save_best_weights(tmp_path / "best", source, {}, ["a", "b"])
    assert not (tmp_path / "best" / "model.safetensors").exists()


class _Payload:
    """Pickles as a call to os.mkdir: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        build_model("frozen", 5, weights=path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_path_names_it_and_the_accepted_forms(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match=r"nowhere\.pth does not exist.*imagenet.*best/"):
        build_model("frozen", 5, weights=missing)


@pytest.mark.parametrize(
    ("name", "message"),
    [("empty", "holds neither checkpoint.pt nor model.safetensors"), ("w.npz", "unknown suffix")],
)
def test_unusable_paths_are_explained(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if name == "empty":
        path.mkdir()
    else:
        path.write_bytes(b"\0")
    with pytest.raises(WeightsError, match=message):
        read_weights(path)


def test_a_file_that_is_not_an_xception_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict(), path)
    with pytest.raises(WeightsError, match="not a timm legacy_xception state dict"):
        build_model("frozen", 5, weights=path)
    torch.save({"epoch": 3, "notes": "no tensors"}, path)
    with pytest.raises(WeightsError, match="holds no state dict"):
        build_model("frozen", 5, weights=path)


def test_missing_unexpected_and_misshapen_backbone_keys_are_named(
    tmp_path: Path, source: nn.Module
) -> None:
    state = dict(source.state_dict())
    del state["block3.rep.1.pointwise.weight"]
    state["block99.weight"] = torch.zeros(1)
    state["bn1.weight"] = torch.zeros(7)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as caught:
        build_model("frozen", 5, weights=path)
    message = str(caught.value)
    assert "block3.rep.1.pointwise.weight" in message
    assert "block99.weight" in message
    assert "bn1.weight (7,) != (32,)" in message


def test_imagenet_download_failure_explains_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing cached, and any download goes to a closed port, so this fails
    # the same way with or without internet access.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    for skip in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(skip, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # rebuilt with the proxies above
    with pytest.raises(WeightsError) as caught:
        build_model("frozen", 196, weights="imagenet")
    message = str(caught.value)
    assert "downloading the ImageNet weights of legacy_xception.tf_in1k failed" in message
    assert "URLError" in message  # the real reason, not just a summary
    assert "--weights PATH" in message
    assert "xception-43020ad28.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message


def test_to_plain_turns_numpy_and_tensors_into_python_and_rejects_objects() -> None:
    plain = to_plain({"a": np.float32(0.5), "b": torch.tensor(3), "c": (np.bool_(True), Path("x"))})
    assert plain == {"a": 0.5, "b": 3, "c": [True, "x"]}
    assert [type(v) for v in (plain["a"], plain["b"], plain["c"][0])] == [float, int, bool]
    with pytest.raises(TypeError, match=r"metrics\['model'\] is a Linear"):
        to_plain({"model": nn.Linear(1, 1)}, "metrics")
