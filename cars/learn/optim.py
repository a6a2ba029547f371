"""Optimizer, learning-rate schedule, loss and mixup of a training run.

The head always learns at ``config.lr``; pretrained blocks learn at
``config.lr * config.backbone_lr_mult`` so fine-tuning does not wreck the
features it starts from. Biases and norm parameters take no weight decay.

A learning rate is tuned for a batch size. When ``config.lr_batch_size`` names
the one ``config.lr`` was chosen for and the run's global batch differs, every
rate is scaled by :func:`scale_lr`: linearly for SGD (Goyal et al. 2017,
"Accurate, Large Minibatch SGD": k times the batch, k times the rate, after a
gradual warmup, which :class:`WarmupCosine` gives), and by the square root for
AdamW (Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive
Gradient Algorithms": Adam divides its update by the gradient's second moment,
and its stochastic differential equation stays the same when the rate grows
with the square root of the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_weight_decay
from timm.utils import unwrap_model
from torch import nn

from cars.config import TrainConfig
from cars.learn.model import head_parameters

# How each optimizer's learning rate follows the batch size (see the module docstring).
LR_SCALING = {"sgd": "linear", "adamw": "sqrt"}


def scale_lr(lr: float, batch_size: int, lr_batch_size: int | None, optimizer: str) -> float:
    """``lr``, tuned for batches of ``lr_batch_size``, for batches of ``batch_size``.

    Linear in the batch ratio for ``sgd``, its square root for ``adamw``;
    ``lr`` itself when ``lr_batch_size`` is ``None`` or equal to ``batch_size``.
    """
    if lr_batch_size is None or lr_batch_size == batch_size:
        return lr
    if optimizer not in LR_SCALING:
        raise ValueError(f"optimizer={optimizer!r} has no scaling rule; one of {list(LR_SCALING)}")
    ratio = batch_size / lr_batch_size
    return lr * (ratio if LR_SCALING[optimizer] == "linear" else math.sqrt(ratio))


def run_lr(config: TrainConfig) -> float:
    """The head's base learning rate of a run: ``config.lr`` scaled to its global batch."""
    global_batch = config.batch_size_per_worker * config.num_workers
    return scale_lr(config.lr, global_batch, config.lr_batch_size, config.optimizer)


def create_optimizer(
    model: nn.Module, config: TrainConfig, *, fused: bool | None = None
) -> torch.optim.Optimizer:
    """AdamW (or Nesterov SGD) over the trainable parameters, in named groups.

    Groups are ``head`` and ``head_no_decay`` first, then ``backbone`` and
    ``backbone_no_decay`` (empty groups are left out); each carries a ``name``.
    The head's rate is :func:`run_lr`.

    Args:
        fused: one fused kernel per step for all parameters (``torch.optim``'s
            ``fused=True``) instead of a few multi-tensor (``foreach``) kernels per
            state; ``None``: fused when every trainable parameter is on a GPU.
            Build the optimizer after moving the model to its device.
    """
    model = unwrap_model(model)
    head_ids = {id(p) for p in head_parameters(model)}
    lr = run_lr(config)
    backbone_lr = lr * config.backbone_lr_mult if config.pretrained else lr
    groups: dict[str, dict] = {}
    # timm splits decay / no-decay (1-d tensors and biases) and skips frozen parameters.
    for group in param_groups_weight_decay(model, config.weight_decay):
        suffix = "" if group["weight_decay"] else "_no_decay"
        for part, part_lr in (("head", lr), ("backbone", backbone_lr)):
            in_head = part == "head"
            params = [p for p in group["params"] if (id(p) in head_ids) == in_head]
            if params:
                groups[part + suffix] = {
                    "name": part + suffix,
                    "params": params,
                    "lr": part_lr,
                    "weight_decay": group["weight_decay"],
                }
    order = ("head", "head_no_decay", "backbone", "backbone_no_decay")
    param_groups = [groups[name] for name in order if name in groups]
    if not param_groups:
        raise ValueError("the model has no trainable parameters; nothing to optimize")
    if fused is None:
        fused = all(p.is_cuda for g in param_groups for p in g["params"])
    # None, not False: torch then picks its foreach kernels where they apply.
    implementation = {"fused": True} if fused else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            param_groups, lr=lr, momentum=config.momentum, nesterov=True, **implementation
        )
    return torch.optim.AdamW(param_groups, lr=lr, **implementation)


# Not timm's CosineLRScheduler nor torch's CosineAnnealingLR: both floor every group at one
# absolute lr (each group here ends at min_ratio of its own), and timm's keeps no step count.
@dataclass
class WarmupCosine:
    """The learning-rate factor at a step: linear warmup to 1, then cosine down to ``min_ratio``.

    A plain object of numbers, so ``LambdaLR.state_dict()`` saves it and a
    resumed run continues the same curve.
    """

    warmup_steps: int
    total_steps: int
    min_ratio: float

    def __call__(self, step: int) -> float:
        """The factor applied to each group's base learning rate at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def create_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule over ``config.epochs``: warmup for ``config.warmup_epochs``, then cosine.

    Step it after every optimizer step; the last step of the last epoch runs at
    ``config.min_lr_ratio`` of each group's base learning rate.
    """
    if steps_per_epoch < 1:
        raise ValueError(
            f"steps_per_epoch={steps_per_epoch} is not valid: the training loader yields no "
            "batch; use a smaller batch size or more training images"
        )
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    factor = WarmupCosine(warmup_steps=warmup, total_steps=total, min_ratio=config.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def create_loss(config: TrainConfig, num_classes: int) -> nn.Module:
    """Label-smoothed cross entropy, or soft-target cross entropy when mixup/cutmix is on.

    With mixup, :func:`create_mixup` folds the label smoothing into its soft targets.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is not valid: at least 2 classes")
    if config.mixup > 0 or config.cutmix > 0:
        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)


def create_mixup(config: TrainConfig, num_classes: int) -> Mixup | None:
    """timm's ``Mixup`` for the configured alphas, or ``None`` when both are 0.

    It needs even batch sizes: train with ``drop_last=True`` and an even batch.
    """
    if config.mixup == 0 and config.cutmix == 0:
        return None
    return Mixup(
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        label_smoothing=config.label_smoothing,
        num_classes=num_classes,
    )
