"""Resuming a run's optimizer and schedule from a checkpoint, on the model's device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from devices import DEVICES

from cars.config import TrainConfig
from cars.learn.checkpoint import save_checkpoint
from cars.learn.history import write_history
from cars.learn.model import build_model
from cars.learn.training_state import TrainingState, create_training_state

STEPS_PER_EPOCH = 3


def _config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(data=str(tmp_path), regime="finetune", trainable_blocks=1, epochs=4)


def _train_steps(model: torch.nn.Module, state: TrainingState, device: str, steps: int) -> None:
    images = torch.randn(2, 3, 32, 32, device=device)
    labels = torch.tensor([0, 1], device=device)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()


def _write_epoch_one(tmp_path: Path, device: str) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    config = _config(tmp_path)
    model = build_model("finetune", 4, trainable_blocks=1).to(device)
    state = create_training_state(model, config, STEPS_PER_EPOCH)
    _train_steps(model, state, device, STEPS_PER_EPOCH)
    directory = tmp_path / "epoch-0001"
    save_checkpoint(
        directory,
        model=model,
        optimizer=state.optimizer,
        scheduler=state.scheduler,
        epoch=1,
        config=config.to_dict(),
        class_names=list("abcd"),
        metrics={"epoch": 1},
    )
    write_history(directory, [{"epoch": 1, "val_acc": 0.5}])
    return directory, model


def test_a_fresh_start_begins_at_epoch_one(tmp_path: Path) -> None:
    model = build_model("finetune", 4, trainable_blocks=1)
    state = create_training_state(model, _config(tmp_path), STEPS_PER_EPOCH)
    assert state.start_epoch == 1
    assert state.history == []
    assert state.optimizer.state_dict()["state"] == {}
    assert state.scheduler.last_epoch == 0


@pytest.mark.parametrize("device", DEVICES)
def test_a_resumed_state_lives_on_the_parameters_device(tmp_path: Path, device: str) -> None:
    directory, trained = _write_epoch_one(tmp_path, device)
    model = build_model("finetune", 4, trainable_blocks=1).to(device)
    state = create_training_state(model, _config(tmp_path), STEPS_PER_EPOCH, directory)

    assert state.start_epoch == 2
    assert state.history == [{"epoch": 1, "val_acc": 0.5}]
    assert state.scheduler.last_epoch == STEPS_PER_EPOCH
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained.state_dict()[name]), name
    moments = 0
    for group in state.optimizer.param_groups:
        for param in group["params"]:
            for key, value in state.optimizer.state[param].items():
                # AdamW keeps its step count as a CPU scalar unless fused or capturable.
                if key == "step" and value.ndim == 0:
                    continue
                assert value.device == param.device, (group["name"], key, value.device)
                moments += 1
    assert moments == 2 * sum(p.requires_grad for p in model.parameters())
    # The first step after the resume runs (a device mismatch would raise here).
    _train_steps(model, state, device, 1)
    assert state.scheduler.last_epoch == STEPS_PER_EPOCH + 1
