"""A trained classifier ready to predict: the network, its class names and its input.

It loads every model folder this project writes, and any that timm writes: a
report's ``best/`` (timm's Hugging Face layout, or the project's earlier one),
a training checkpoint (a folder holding ``checkpoint.pt``, or that file), or any
folder ``timm.create_model("local-dir:<folder>", pretrained=True)`` loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from torch import nn

from cars.data.normalize import InputNormalizer, create_input_normalizer
from cars.data.transforms import EvalTransform, create_eval_transform
from cars.learn.checkpoint import (
    BEST_CONFIG_FILE,
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    WeightsError,
    eval_data_config,
    load_checkpoint,
)
from cars.learn.model import ARCHITECTURE
from cars.learn.precision import amp_dtype_for, autocast
from cars.learn.weights import apply_state_dict, load_weights, read_label_names
from cars.paths import is_uri, resolve_path

MODEL_FORMS = (
    f"a report's best/ folder, a checkpoint folder of this project (holding {CHECKPOINT_FILE}) "
    f"or that file, or any folder timm loads ({BEST_CONFIG_FILE} with a pretrained_cfg, and "
    "its weights)"
)


@dataclass(frozen=True)
class Classifier:
    """A model in eval mode, with what it takes to feed it and to read its answers.

    ``data_config`` holds timm's evaluation keys (``input_size``, ``interpolation``,
    ``mean``, ``std``, ``crop_pct``, ``crop_mode``). A model trained on images cropped
    to the car's box (``bbox_crop``) sees such crops wherever boxes are known.
    """

    model: nn.Module
    class_names: list[str]
    data_config: dict[str, Any]
    bbox_crop: bool = False
    bbox_margin: float = 0.1
    train_config: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        """The side of the square input the model sees."""
        return int(self.data_config["input_size"][-1])

    def create_transform(self) -> EvalTransform:
        """The deterministic evaluation transform: an image in, a uint8 tensor out."""
        return create_eval_transform(self.data_config)

    def create_normalizer(self) -> InputNormalizer:
        """What turns the transform's uint8 output into the model's input, on the device."""
        return create_input_normalizer(self.data_config)

    def to(self, device: torch.device | str) -> Classifier:
        """Move the model to ``device`` (channels-last on a GPU, where its convolutions are
        fastest so); returns ``self``."""
        device = torch.device(device)
        memory_format = torch.channels_last if device.type == "cuda" else torch.preserve_format
        self.model.to(device, memory_format=memory_format)
        return self

    @torch.inference_mode()
    def predict_probabilities(
        self, pixels: torch.Tensor, device: torch.device | str
    ) -> torch.Tensor:
        """Class probabilities (images x classes, float32, on ``device``) of transformed images.

        Args:
            pixels: uint8 N x C x H x W images, as :meth:`create_transform` makes them.
            device: where the model sits (see :meth:`to`); on a GPU it runs in bf16.
        """
        device = torch.device(device)
        inputs = self.create_normalizer()(pixels, device, channels_last=device.type == "cuda")
        with autocast(device, amp_dtype_for(device)):
            logits = self.model(inputs)
        return torch.softmax(logits.float(), dim=1)


def load_classifier(source: str | Path) -> Classifier:
    """Load a model folder or checkpoint (see :data:`MODEL_FORMS`) for prediction, on the CPU."""
    if is_uri(source):
        raise WeightsError(
            f"model {source!r} is a URI; copy it to a local path. Accepted: {MODEL_FORMS}"
        )
    path = Path(resolve_path(source))
    if (path.is_file() and path.name == CHECKPOINT_FILE) or (path / CHECKPOINT_FILE).is_file():
        return _from_checkpoint(path)
    config_file = path / BEST_CONFIG_FILE
    if not config_file.is_file():
        what = "does not exist" if not path.exists() else f"holds no {BEST_CONFIG_FILE}"
        raise WeightsError(f"model {path} {what}. Accepted: {MODEL_FORMS}")
    try:
        description = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot read {config_file} as JSON: {err}") from err
    if "pretrained_cfg" in description:
        return _from_timm_folder(path, description)
    if (path / BEST_WEIGHTS_FILE).is_file() and "class_names" in description:
        return _from_earlier_best(path, description)
    raise WeightsError(
        f"{config_file} has no pretrained_cfg, and {path} is no best/ folder of this project. "
        f"Accepted: {MODEL_FORMS}"
    )


def _from_checkpoint(path: Path) -> Classifier:
    state = load_checkpoint(path)
    names = [str(c) for c in state.get("class_names", [])]
    if not names:
        raise WeightsError(f"checkpoint {path} records no class names; it cannot name predictions")
    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=len(names))
    apply_state_dict(model, state["model"], source=str(path), checkpoint_classes=names)
    return _classifier(model, names, state.get("config") or {})


def _from_earlier_best(path: Path, description: dict[str, Any]) -> Classifier:
    names = read_label_names(description) or []
    architecture = description.get("architecture", ARCHITECTURE)
    model = timm.create_model(architecture, pretrained=False, num_classes=len(names))
    load_weights(model, path, class_names=names)
    return _classifier(model, names, description.get("config") or {})


def _from_timm_folder(path: Path, description: dict[str, Any]) -> Classifier:
    try:
        model = timm.create_model(f"local-dir:{path}", pretrained=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise WeightsError(f"timm cannot load {path}: {err}. Accepted: {MODEL_FORMS}") from err
    names = read_label_names(model.pretrained_cfg)
    if names is None or len(names) != model.num_classes:
        # A folder without class names still predicts; its classes are its indices.
        names = [str(i) for i in range(model.num_classes)]
    data_config = timm.data.resolve_data_config({}, model=model)
    train_config = description.get("train_config") or {}
    return Classifier(
        model=model.eval(),
        class_names=names,
        data_config=data_config,
        bbox_crop=bool(train_config.get("bbox_crop", False)),
        bbox_margin=float(train_config.get("bbox_margin", 0.1)),
        train_config=train_config,
    )


def _classifier(model: nn.Module, names: list[str], train_config: dict[str, Any]) -> Classifier:
    return Classifier(
        model=model.eval(),
        class_names=names,
        data_config=eval_data_config(model, train_config.get("image_size")),
        bbox_crop=bool(train_config.get("bbox_crop", False)),
        bbox_margin=float(train_config.get("bbox_margin", 0.1)),
        train_config=dict(train_config),
    )
