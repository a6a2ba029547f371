"""What a training run carries across a restart: optimizer, schedule, next epoch and history.

The Ray Train loop and plain single-process runs (the GPU check, which has no
Ray) build it the same way, so a resume that works in one works in the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.utils import unwrap_model
from torch import nn

from cars.config import TrainConfig
from cars.learn.checkpoint import load_checkpoint
from cars.learn.history import read_history
from cars.learn.optim import create_optimizer, create_scheduler


@dataclass
class TrainingState:
    """The optimizer and schedule of a run, the epoch it continues at, and its epochs so far."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start_epoch: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)


def create_training_state(
    model: nn.Module,
    config: TrainConfig,
    steps_per_epoch: int,
    checkpoint_dir: str | Path | None = None,
) -> TrainingState:
    """Build the optimizer and schedule of ``model``, resumed from ``checkpoint_dir`` if given.

    ``model`` must already sit on its device: ``Optimizer.load_state_dict``
    places each state tensor on its parameter's device when it loads, so a model
    moved afterwards would leave AdamW's moments on the CPU and the first step
    on a GPU would fail. The checkpoint's weights are loaded into ``model`` too.

    Args:
        steps_per_epoch: optimizer steps in one epoch (the schedule's unit).
        checkpoint_dir: a local folder written by :func:`cars.learn.checkpoint.save_checkpoint`
            (e.g. ``Checkpoint.as_directory()``), or ``None`` for a fresh start.
    """
    state = None
    history: list[dict[str, Any]] = []
    if checkpoint_dir is not None:
        state = load_checkpoint(checkpoint_dir)
        history = read_history(checkpoint_dir)
        unwrap_model(model).load_state_dict(state["model"])
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, steps_per_epoch)
    if state is None:
        return TrainingState(optimizer, scheduler)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return TrainingState(optimizer, scheduler, int(state["epoch"]) + 1, history)
