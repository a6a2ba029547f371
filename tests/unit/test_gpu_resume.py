"""A training run interrupted and resumed on a GPU, through the Ray-free engine.

The same checkpoint and resume code as the Ray Train loop (``cars.learn.checkpoint``,
``cars.learn.training_state``), without Ray: a machine that checks the CUDA path may
have no Ray installed. Skipped without CUDA.
"""

from __future__ import annotations

from pathlib import Path

import torch
from devices import NEEDS_CUDA
from torch.utils.data import DataLoader

from cars.config import TrainConfig
from cars.data import CarsDataset, create_transform_for, read_dataset_info
from cars.learn.checkpoint import load_checkpoint, save_checkpoint
from cars.learn.engine import evaluate, train_one_epoch
from cars.learn.history import read_history, write_history
from cars.learn.model import build_model
from cars.learn.optim import create_loss
from cars.learn.training_state import create_training_state

pytestmark = NEEDS_CUDA

DEVICE = torch.device("cuda")


def _run_epochs(config: TrainConfig, runs: Path, resume_from: Path | None, stop_after: int) -> Path:
    """Train from a fresh start or a checkpoint up to ``stop_after``; the last checkpoint."""
    info = read_dataset_info(config.data)
    train_set = CarsDataset(
        config.data, "train", create_transform_for("basic", config.image_size, is_training=True)
    )
    val_set = CarsDataset(
        config.data, "val", create_transform_for("none", config.image_size, is_training=False)
    )
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=config.batch_size)
    model = build_model(config.regime, info.num_classes, config.trainable_blocks)
    model = model.to(DEVICE, memory_format=torch.channels_last)
    state = create_training_state(model, config, len(train_loader), resume_from)
    for epoch in range(state.start_epoch, stop_after + 1):
        train = train_one_epoch(
            model,
            train_loader,
            state.optimizer,
            loss_fn=create_loss(config, info.num_classes),
            scheduler=state.scheduler,
            device=DEVICE,
            amp_dtype=torch.bfloat16,
            channels_last=True,
        )
        val = evaluate(
            model, val_loader, device=DEVICE, amp_dtype=torch.bfloat16, channels_last=True
        )
        metrics = {"epoch": epoch, "train_loss": train["loss"], "val_acc": val["acc"]}
        state.history.append(metrics)
        directory = runs / f"epoch-{epoch:04d}"
        save_checkpoint(
            directory,
            model=model,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            epoch=epoch,
            config=config.to_dict(),
            class_names=info.class_names,
            metrics=metrics,
        )
        write_history(directory, state.history)
    return runs / f"epoch-{stop_after:04d}"


def test_a_run_interrupted_on_the_gpu_resumes_there(prepared_set: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        data=str(prepared_set), regime="scratch", epochs=2, batch_size=8, image_size=32,
        use_gpu=True,
    )  # fmt: skip
    first = _run_epochs(config, tmp_path, None, stop_after=1)
    # The interruption: a new process would start from nothing but the checkpoint.
    torch.cuda.empty_cache()
    last = _run_epochs(config, tmp_path, first, stop_after=2)

    state = load_checkpoint(last)
    steps_per_epoch = 36 // 8
    assert state["epoch"] == 2
    assert state["scheduler"]["last_epoch"] == 2 * steps_per_epoch
    moments = [v for s in state["optimizer"]["state"].values() for k, v in s.items() if k != "step"]
    assert moments and all(torch.isfinite(v).all() for v in moments)
    assert [row["epoch"] for row in read_history(last)] == [1, 2]
