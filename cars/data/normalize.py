"""The model's input made on the device: uint8 pixels in, normalised floats out.

Loaders hand over uint8 C x H x W images, so the CPU neither converts nor
normalises and a GPU receives a quarter of the bytes; as timm's
``PrefetchLoader`` does, the float conversion, the mean/std normalisation and
the random erasing of the ``strong`` policy (which works in normalised units)
run where the model runs. :func:`normalize_on_device` is the one place that
does it; everything that feeds a model (training, evaluation, precise BN,
Grad-CAM, scoring, prediction, the benchmarks) goes through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.utils import unwrap_model
from torch import nn


def normalize_on_device(
    images: torch.Tensor,
    device: torch.device | str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
    erasing: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 images (N x C x H x W, or one C x H x W) to the model's float input on ``device``.

    Computes ``(images / 255 - mean) / std`` in float32 after the transfer (uint8
    crosses to the device), then ``erasing`` if given. A floating-point tensor is
    taken as already normalised (a model input built elsewhere, or features) and
    only moved.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if images.is_floating_point():
        return images.to(device, non_blocking=True, memory_format=memory_format)
    if images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 pixels (or already normalised floats), got {images.dtype}"
        )
    pixels = images.to(device, non_blocking=True)
    mean_t, std_t = _channel_statistics(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), pixels.device
    )
    # The same operations in the same order as torchvision's ToTensor + Normalize,
    # so the result equals the former CPU path's bit for bit.
    out = pixels.float().div_(255).sub_(mean_t).div_(std_t)
    if out.ndim == 4 and channels_last:
        out = out.contiguous(memory_format=memory_format)
    if erasing is not None:
        out = erasing(out)
    return out


@functools.lru_cache(maxsize=16)
def _channel_statistics(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as C x 1 x 1 float32 tensors on ``device``, made once per device.

    Copying them from the host at every batch would make the host wait for the
    device at every step (a copy from pageable memory is synchronous).
    """
    # Ordinary tensors even when first asked for under inference_mode: training uses them too.
    with torch.inference_mode(False), torch.no_grad():
        shape = (-1, 1, 1)
        return (
            torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
            torch.tensor(std, dtype=torch.float32, device=device).view(shape),
        )


@dataclass(frozen=True)
class InputNormalizer:
    """:func:`normalize_on_device` with a model's mean and std (and, for training, erasing)."""

    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    erasing: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(
        self, images: torch.Tensor, device: torch.device | str, channels_last: bool = False
    ) -> torch.Tensor:
        """The model input on ``device``; see :func:`normalize_on_device`."""
        if self.mean is None or self.std is None:
            if images.is_floating_point():
                return normalize_on_device(
                    images, device, mean=(), std=(), channels_last=channels_last
                )
            raise ValueError(
                "uint8 images need the model's mean and std, and this model has no timm "
                "pretrained_cfg: pass an InputNormalizer with them"
            )
        return normalize_on_device(
            images,
            device,
            mean=self.mean,
            std=self.std,
            channels_last=channels_last,
            erasing=self.erasing,
        )


def create_input_normalizer(
    model: nn.Module | dict[str, Any],
    erasing: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> InputNormalizer:
    """The normaliser of a timm model (its ``pretrained_cfg``) or of a timm data config.

    Args:
        model: a timm model, plain or wrapped (DDP, ``torch.compile``), or a dict with
            ``mean`` and ``std`` (a data config); anything else yields a normaliser that
            accepts only already normalised floats.
        erasing: applied after normalising (the ``strong`` policy's random erasing).
    """
    if isinstance(model, nn.Module):
        config = getattr(unwrap_model(model), "pretrained_cfg", None) or {}
    else:
        config = model
    mean, std = config.get("mean"), config.get("std")
    return InputNormalizer(
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        erasing=erasing,
    )
