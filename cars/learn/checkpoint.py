"""The project's own files: training checkpoints and a report's ``best/`` weights.

A checkpoint (``checkpoint.pt``) holds the model, optimizer and scheduler states
with the run's epoch, config, class names and metrics, all as tensors and
plain values, so that it loads with ``torch.load(..., weights_only=True)``: a
checkpoint is data, never code. ``best/`` is a model folder in the layout timm
writes for the Hugging Face Hub: ``model.safetensors`` and a ``config.json``
that timm reads back. Every file is written under a temporary name and renamed
into place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from timm.models._hub import save_for_hf
from timm.utils import unwrap_model
from torch import nn

from cars.learn.checkpoint_files import CHECKPOINT_FILE
from cars.paths import resolve_path
from cars.storage import atomic_path, join_path, local_copy

BEST_WEIGHTS_FILE = "model.safetensors"
BEST_CONFIG_FILE = "config.json"


class WeightsError(RuntimeError):
    """Weights that cannot be found, read or loaded, with what was expected instead."""


def torch_load(path: Path, shown: str | None = None) -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``, on the CPU.

    Args:
        shown: where the file came from, for errors (a URI it was downloaded from).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"cannot read {shown or path}: {err}. Only files of tensors and plain containers load "
            "(torch.load weights_only=True): a checkpoint is data, never code."
        ) from err


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    config: Mapping[str, Any],
    class_names: list[str],
    metrics: Mapping[str, Any],
) -> Path:
    """Write ``directory/checkpoint.pt`` with the model, optimizer, scheduler and run metadata.

    Everything is stored as tensors and plain Python values, so
    :func:`load_checkpoint` reads it with ``weights_only=True``. Returns the file.
    """
    payload = {
        "model": _state_dict_of(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "epoch": int(epoch),
        "config": to_plain(config, "config"),
        "class_names": [str(c) for c in class_names],
        "metrics": to_plain(metrics, "metrics"),
    }
    path = Path(directory) / CHECKPOINT_FILE
    with atomic_path(path) as staged:
        torch.save(payload, staged)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a project checkpoint (its folder or its ``checkpoint.pt``), ``weights_only=True``.

    ``path`` is a local path or a URI (``s3://...``), downloaded first.
    """
    location = resolve_path(path)
    with local_copy(location) as local:
        file = local / CHECKPOINT_FILE if local.is_dir() else local
        shown = join_path(location, CHECKPOINT_FILE) if local.is_dir() else location
        if not file.is_file():
            raise WeightsError(
                f"no project checkpoint at {shown}: expected a folder holding {CHECKPOINT_FILE} "
                "(as written by save_checkpoint), or that file"
            )
        content = torch_load(file, shown=shown)
    if not isinstance(content, dict) or not {"model", "epoch"} <= set(content):
        raise WeightsError(f"{shown} is not a project checkpoint (no 'model' and 'epoch' entries)")
    return content


def save_best_weights(
    directory: str | Path, model: nn.Module, config: Mapping[str, Any], class_names: list[str]
) -> Path:
    """Write a report's ``best/`` folder the way timm writes a model for the Hugging Face Hub.

    timm's own ``save_for_hf`` writes ``model.safetensors`` and a ``config.json``
    with ``architecture``, ``num_classes``, ``label_names`` and a
    ``pretrained_cfg`` of the evaluation input (size, mean, std, interpolation,
    crop), so ``timm.create_model("local-dir:<folder>", pretrained=True)`` loads
    it without this project; ``train_config`` records how it was trained.
    ``build_model(..., weights=directory)`` loads it too. Returns the folder.
    """
    folder = Path(directory)
    inner = unwrap_model(model)
    if inner.num_classes != len(class_names):
        raise WeightsError(
            f"the model has a {inner.num_classes}-class head but {len(class_names)} class "
            "names were given; pass the data set's classes in label order"
        )
    train_config = to_plain(config, "config")
    model_config = {"label_names": [str(c) for c in class_names], "train_config": train_config}
    with atomic_path(folder) as staged:
        save_for_hf(
            inner,
            str(staged),
            model_config=model_config,
            safe_serialization=True,
            data_config=eval_data_config(inner, train_config.get("image_size")),
        )
    return folder


def eval_data_config(model: nn.Module, image_size: int | None) -> dict[str, Any]:
    """The evaluation input of a model trained at ``image_size``, in timm's data-config keys."""
    cfg = unwrap_model(model).pretrained_cfg
    size = tuple(cfg["input_size"][1:]) if image_size is None else (image_size, image_size)
    keys = ("interpolation", "mean", "std", "crop_pct", "crop_mode")
    return {"input_size": (3, *size), **{k: cfg[k] for k in keys if k in cfg}}


def _state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    # Unwrapped, so the keys carry no DDP or torch.compile prefix.
    return dict(unwrap_model(model).state_dict())


def to_plain(value: Any, where: str = "value") -> Any:
    """``value`` as plain dicts, lists, str, int, float, bool and None (what weights_only loads).

    Dataclasses and objects with ``to_dict`` become dicts, tuples lists, paths
    strings, numpy and one-element torch scalars Python numbers; anything else is
    a ``TypeError`` naming where it sits.
    """
    if value is None:
        return None
    # numpy's float64 subclasses float yet would pickle as a numpy object.
    for plain in (bool, str, int, float):
        if isinstance(value, plain):
            return plain(value)
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return to_plain(value.item(), where)
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoints hold only plain values "
        "(dict, list, str, int, float, bool, None)"
    )
