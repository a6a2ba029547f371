"""Where an Xception's starting weights come from, and how they are loaded into it.

Sources: ``imagenet`` (timm's own pretrained download), a ``.pth`` / ``.pt`` /
``.safetensors`` file of a timm ``legacy_xception`` state dict, a project
checkpoint (a folder holding ``checkpoint.pt``, or that file) or a report's
``best/`` folder (``model.safetensors`` + ``config.json``, in timm's Hugging Face
layout or the project's earlier one); each a local path or a URI (``s3://...``),
which is downloaded through ``pyarrow.fs``.

Every ``.pth`` / ``.pt`` file is read with ``torch.load(..., weights_only=True)``: a
checkpoint is data, never code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import timm.models
import torch
from timm.models import clean_state_dict
from timm.utils import unwrap_model
from torch import nn

from cars.learn.checkpoint import (
    BEST_CONFIG_FILE,
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    WeightsError,
    torch_load,
)
from cars.paths import resolve_path
from cars.storage import join_path, local_copy

ACCEPTED_FORMS = (
    "'imagenet' (timm's download), 'none', a .pth/.pt/.safetensors file holding a timm "
    f"legacy_xception state dict, a project checkpoint (a folder with {CHECKPOINT_FILE}, or "
    f"that file), or a report's best/ folder ({BEST_WEIGHTS_FILE} + {BEST_CONFIG_FILE})"
)
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_SHOWN_KEYS = 8

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """A state dict read from storage, with the class names recorded beside it (if any)."""

    path: str
    state_dict: dict[str, torch.Tensor]
    class_names: list[str] | None


def load_weights(
    model: nn.Module, source: str | Path, *, class_names: list[str] | None = None
) -> None:
    """Load ``source`` (``imagenet``, a local file or folder, or a URI) into an Xception.

    The backbone loads strictly; a head for a different class count (or for other
    ``class_names``) is left freshly initialised, and a warning says so.
    """
    if str(source).lower() == "imagenet":
        _load_imagenet(model)
        return
    weights = read_weights(source)
    apply_state_dict(
        model,
        weights.state_dict,
        source=str(weights.path),
        checkpoint_classes=weights.class_names,
        class_names=class_names,
    )


def _load_imagenet(model: nn.Module) -> None:
    cfg = dict(model.pretrained_cfg)
    try:
        timm.models.load_pretrained(model, cfg, num_classes=model.num_classes)
    except (OSError, RuntimeError, ValueError) as err:  # network, hub and hash failures
        raise WeightsError(_download_failure(cfg, err)) from err
    if model.num_classes != cfg["num_classes"]:
        _logger.warning(
            "ImageNet head (%d classes) replaced by a freshly initialised %d-class head",
            cfg["num_classes"],
            model.num_classes,
        )


def _download_failure(cfg: dict[str, Any], err: Exception) -> str:
    name = f"{cfg['architecture']}.{cfg['tag']}"
    fetch = (
        f"python -c \"import timm; timm.create_model('{cfg['architecture']}', pretrained=True)\""
    )
    if cfg.get("hf_hub_id"):
        where = f"the Hugging Face hub ({cfg['hf_hub_id']}, cached under $HF_HOME/hub)"
        get = f"`huggingface-cli download {cfg['hf_hub_id']}` or `{fetch}`"
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg["url"]).name
        where = f"{cfg['url']} (cached as {cached})"
        get = f"`{fetch}` (it caches the file as above) or `curl -L -O {cfg['url']}`"
    return (
        f"downloading the ImageNet weights of {name} failed ({type(err).__name__}: {err}); "
        f"timm fetches them from {where}, which needs internet access. Pass a local copy "
        f"instead with --weights PATH (a .pth/.safetensors state dict): on a machine with "
        f"internet run {get}, then copy the file here: to the cache path above, or anywhere "
        "and pass its path with --weights."
    )


def read_weights(source: str | Path) -> WeightsFile:
    """Read a state dict from any accepted file or folder (see :data:`ACCEPTED_FORMS`).

    ``source`` is a local path or a URI (``s3://...``), downloaded first.
    """
    location = resolve_path(source)
    with local_copy(location) as local:
        return _read_local_weights(local, location)


def _read_local_weights(path: Path, location: str) -> WeightsFile:
    """Read the weights at local ``path``, naming them by ``location`` (where they came from)."""
    if path.is_dir():
        if (path / CHECKPOINT_FILE).is_file():
            path, location = path / CHECKPOINT_FILE, join_path(location, CHECKPOINT_FILE)
        elif (path / BEST_WEIGHTS_FILE).is_file():
            path, location = path / BEST_WEIGHTS_FILE, join_path(location, BEST_WEIGHTS_FILE)
        else:
            found = sorted(p.name for p in path.iterdir())[:_SHOWN_KEYS]
            raise WeightsError(
                f"folder {location} holds neither {CHECKPOINT_FILE} nor {BEST_WEIGHTS_FILE} "
                f"(found {found}). Accepted: {ACCEPTED_FORMS}"
            )
    elif not path.is_file():
        raise WeightsError(f"weights file {location} does not exist. Accepted: {ACCEPTED_FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return WeightsFile(
            location, _read_safetensors(path, location), _read_best_classes(path.parent)
        )
    if suffix not in _TORCH_SUFFIXES:
        raise WeightsError(
            f"weights file {location} has an unknown suffix. Accepted: {ACCEPTED_FORMS}"
        )
    # Not timm.models.load_state_dict: it drops the class names stored beside the weights
    # and fails with a bare FileNotFoundError or torch.load's message instead of ours.
    content = torch_load(path, shown=location)
    class_names = None
    if isinstance(content, Mapping):
        if isinstance(content.get("class_names"), list):
            class_names = [str(c) for c in content["class_names"]]
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in content.values()
    ):
        raise WeightsError(
            f"{location} holds no state dict (a mapping of names to tensors, possibly under "
            f"'model' or 'state_dict'). Accepted: {ACCEPTED_FORMS}"
        )
    return WeightsFile(location, dict(content), class_names)


def _read_safetensors(path: Path, location: str) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(path, device="cpu")
    except Exception as err:
        raise WeightsError(f"cannot read {location} as safetensors: {err}") from err


def _read_best_classes(folder: Path) -> list[str] | None:
    config = folder / BEST_CONFIG_FILE
    if not config.is_file():
        return None
    return read_label_names(json.loads(config.read_text()))


def read_label_names(description: Mapping[str, Any]) -> list[str] | None:
    """The class names of a model folder's ``config.json``, in label order.

    timm's layout names them ``label_names`` (a list, or a mapping from class
    index to name); ``best/`` folders written before this project used timm's
    layout name them ``class_names``.
    """
    names = description.get("label_names", description.get("class_names"))
    if isinstance(names, Mapping):
        names = [names[k] for k in sorted(names, key=int)]
    return [str(c) for c in names] if isinstance(names, list | tuple) else None


def apply_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "state dict",
    checkpoint_classes: list[str] | None = None,
    class_names: list[str] | None = None,
) -> None:
    """Load a ``legacy_xception`` state dict: the backbone strictly, the head only if it fits."""
    model = unwrap_model(model)
    # timm strips the key prefixes of DDP and torch.compile wrappers, in either order.
    state = clean_state_dict(dict(state_dict))
    expected = model.state_dict()
    head = model.pretrained_cfg.get("classifier", "fc")
    head_keys = {k for k in expected if k.startswith(f"{head}.")}
    backbone = [k for k in expected if k not in head_keys]
    matching = sum(k in state for k in backbone)
    if matching < len(backbone) // 2:
        raise WeightsError(
            f"{source} is not a timm legacy_xception state dict: {matching} of the "
            f"{len(backbone)} backbone keys match (its keys start {list(state)[:_SHOWN_KEYS]})"
        )
    # Old timm/PyTorch files lack BatchNorm's counter; load_state_dict fills it in.
    missing = [k for k in backbone if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in backbone
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{source} does not fit legacy_xception: missing keys {missing[:_SHOWN_KEYS]}, "
            f"unexpected keys {unexpected[:_SHOWN_KEYS]}, wrong shapes {wrong[:_SHOWN_KEYS]}"
        )
    wanted = expected[f"{head}.weight"].shape
    found = state.get(f"{head}.weight")
    if found is not None and found.shape[1:] != wanted[1:]:
        raise WeightsError(
            f"{source}: head {head}.weight has shape {tuple(found.shape)}; "
            f"legacy_xception's head takes {wanted[1]} features"
        )
    if found is None or f"{head}.bias" not in state:
        reason = "has no classifier head"
    elif found.shape[0] != wanted[0]:
        reason = f"has a {found.shape[0]}-class head"
    elif class_names is not None and checkpoint_classes not in (None, list(class_names)):
        reason = f"was trained on other classes (same count, {wanted[0]})"
    else:
        model.load_state_dict(state, strict=True)
        return
    _logger.warning("%s %s: using a freshly initialised %d-class head", source, reason, wanted[0])
    model.load_state_dict({k: v for k, v in state.items() if k not in head_keys}, strict=False)
