"""Xception (timm's ``legacy_xception``) for the study, frozen to a chosen depth.

Freeze depth counts Keras Xception blocks from the end of the network, so the
trainable parameter counts match the reference study's Keras figures exactly.
A frozen part is frozen for real: its parameters take no gradient and its
BatchNorm layers stay in eval mode, whatever ``model.train()`` says.
"""

from __future__ import annotations

import logging
from numbers import Integral
from pathlib import Path

import timm
from timm.utils import unwrap_model
from torch import nn

from cars.config import NUM_BLOCKS, REGIMES, ConfigError, resolve_trainable_blocks
from cars.learn.weights import load_weights, read_weights

ARCHITECTURE = "legacy_xception"

# timm module names of each Keras Xception block, from block 1 (the stem) to
# block 14 (the exit flow's two separable convolutions).
XCEPTION_BLOCKS: tuple[tuple[str, ...], ...] = (
    ("conv1", "bn1", "act1", "conv2", "bn2", "act2"),
    *((f"block{i}",) for i in range(1, 13)),
    ("conv3", "bn3", "act3", "conv4", "bn4", "act4"),
)
HEAD = "fc"

_logger = logging.getLogger(__name__)


class EvalBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode: it normalises with its running statistics
    and never updates them, even under ``model.train()``.

    It keeps BatchNorm2d's parameters and state-dict keys, so checkpoints load into
    a frozen and an unfrozen model alike.
    """

    def train(self, mode: bool = True) -> EvalBatchNorm2d:
        """Ignore ``mode``: a frozen BatchNorm is always in eval mode."""
        return super().train(False)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> EvalBatchNorm2d:
        """A frozen copy of ``bn`` with the same statistics, parameters and device."""
        reference = bn.weight if bn.weight is not None else bn.running_mean
        frozen = cls(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            device=None if reference is None else reference.device,
            dtype=None if reference is None else reference.dtype,
        )
        frozen.load_state_dict(bn.state_dict())
        return frozen.requires_grad_(False).eval()


def freeze_blocks(model: nn.Module, trainable_blocks: int) -> None:
    """Freeze all but the last ``trainable_blocks`` Keras blocks of an Xception; the head trains.

    Frozen parameters get ``requires_grad=False`` and frozen BatchNorms become
    :class:`EvalBatchNorm2d`. Call it before building the optimizer and before DDP wrapping.
    """
    if not 0 <= trainable_blocks <= NUM_BLOCKS:
        raise ConfigError(
            f"trainable_blocks={trainable_blocks!r} is not valid: an integer from 0 to {NUM_BLOCKS}"
        )
    model = unwrap_model(model)
    for names in XCEPTION_BLOCKS[: NUM_BLOCKS - trainable_blocks]:
        for name in names:
            _freeze_module(model, name)


def _freeze_module(model: nn.Module, name: str) -> None:
    module = model.get_submodule(name)
    module.requires_grad_(False)
    batchnorms = [
        (path, m)
        for path, m in module.named_modules()
        if isinstance(m, nn.BatchNorm2d) and not isinstance(m, EvalBatchNorm2d)
    ]
    for path, bn in batchnorms:
        full = f"{name}.{path}" if path else name
        parent_name, _, leaf = full.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, EvalBatchNorm2d.from_batchnorm(bn))


def build_model(
    regime: str,
    num_classes: int,
    trainable_blocks: int | None = None,
    weights: str | Path | None = None,
    *,
    class_names: list[str] | None = None,
) -> nn.Module:
    """Build ``legacy_xception`` with a ``num_classes``-way head and weights, frozen for ``regime``.

    Args:
        regime: ``scratch`` (trains all 14 blocks), ``frozen`` (head only) or
            ``finetune`` (head plus the last ``trainable_blocks``, default 1).
        num_classes: size of the new head.
        trainable_blocks: Keras blocks to train, counted from the end (0..14);
            ignored for ``scratch`` and ``frozen``.
        weights: ``None``/``"none"``, ``"imagenet"``, or a local file or folder
            (see :func:`cars.learn.weights.load_weights`).
        class_names: the data set's classes in label order; a checkpoint whose
            recorded classes differ gets a fresh head even if the count matches.
    """
    if regime not in REGIMES:
        raise ConfigError(f"regime={regime!r} is not valid: one of {', '.join(REGIMES)}")
    blocks = resolve_trainable_blocks(regime, trainable_blocks)
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} is not valid: a positive integer")
    num_classes = int(num_classes)  # numpy integers from a data frame are fine
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if regime == "scratch" and weights is not None:
        raise ConfigError(
            f"weights={str(weights)!r} is not valid: regime 'scratch' trains from random "
            "weights; leave weights unset or 'none'"
        )
    if weights is None and regime != "scratch":
        _logger.warning(
            "regime %r without pretrained weights: the fixed blocks keep their random init", regime
        )
    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=num_classes)
    if weights is not None:
        load_weights(model, weights, class_names=class_names)
    freeze_blocks(model, blocks)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """The model's (trainable, total) parameter counts; BatchNorm statistics are buffers."""
    params = list(unwrap_model(model).parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the classifier head (``fc``), which always trains."""
    return list(unwrap_model(model).get_submodule(HEAD).parameters())


def check_weights(source: str | Path) -> None:
    """Fail now, not inside every trial, when ``source`` cannot be loaded.

    ImageNet weights are fetched into timm's cache (so trials on this node find
    them there); files and folders are read and checked to be a state dict.
    """
    if str(source).lower() == "imagenet":
        load_weights(timm.create_model(ARCHITECTURE, pretrained=False), "imagenet")
    else:
        read_weights(source)
