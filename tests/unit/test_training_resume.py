"""A run interrupted after an epoch and resumed is the run that was never interrupted.

Through the product's own path, not a copy of it: a one-worker run in its own
process (as a sweep's one-worker trial runs, here without a Ray cluster) persists
its checkpoint to storage, crashes, and a new run of the same name resumes: the
session's checkpoint to resume, ``create_training_state`` from it, and the worker's
per-epoch loop (augmentation, mixup, random erasing, precise BN). On the CPU it ends
bit for bit where an uninterrupted run of the same seed ends; on CUDA (where present)
within float tolerance, with the optimizer state on the parameters' device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cars.cluster.session import ProcessSession
from cars.cluster.worker import run_worker
from cars.config import TrainConfig
from cars.data import SyntheticCars, prepare_synthetic, read_dataset_info
from cars.learn.checkpoint import load_checkpoint
from cars.learn.history import read_history

# 14 training images in batches of 4 (the last 2 dropped).
STEPS_PER_EPOCH = 3
# Seconds and rates differ between any two runs.
TIMINGS = {
    "epoch_seconds",
    "train_seconds",
    "eval_seconds",
    "epoch_started_at",
    "images_per_second",
}

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]


class CrashError(Exception):
    """The crash: raised once the epoch's checkpoint is stored."""


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 7 training and 2 val images: a run of four epochs is the test's cost,
    and a few steps per epoch draw every random stream as many would."""
    out = tmp_path_factory.mktemp("prepared") / "small"
    cars = SyntheticCars(num_classes=2, train_per_class=9, test_per_class=1, seed=0)
    prepare_synthetic(out, cars, val_fraction=0.25, progress=False)
    return out


def _config(data: Path, device: str) -> TrainConfig:
    # Every random stream of a training epoch is drawn: crop and RandAugment (strong),
    # mixup, random erasing on the device, and precise BN over the whole epoch.
    return TrainConfig(
        data=str(data), regime="scratch", epochs=2, batch_size=4, image_size=32,
        augment="strong", mixup=0.4, seed=11, use_gpu=device == "cuda", max_failures=0,
    )  # fmt: skip


class CrashingSession(ProcessSession):
    """The product's session, which records each reported epoch and crashes after one."""

    def __init__(self, config: TrainConfig, run_path: str, interrupt_after: int) -> None:
        super().__init__(config, run_path, report_to_tune=False)
        self.interrupt_after = interrupt_after
        self.epochs: list[int] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, epoch: int) -> None:
        super().report(metrics, checkpoint_dir, epoch)
        self.epochs.append(epoch)
        if epoch == self.interrupt_after:
            raise CrashError


def _fit(config: TrainConfig, storage: Path, name: str, interrupt_after: int = 0) -> list[int]:
    """Run (or resume) the run ``name``; the epochs it reported."""
    session = CrashingSession(config, str(storage / name), interrupt_after)
    if interrupt_after:
        with pytest.raises(CrashError):
            run_worker(config.to_dict(), session)
    else:
        run_worker(config.to_dict(), session)
    return session.epochs


@contextmanager
def _watched_steps() -> Iterator[list[list[str]]]:
    """Each optimizer step taken in the block, as the state tensors off their parameter's device.

    ``step`` counts are left out: PyTorch keeps them on the CPU by design.
    """
    steps: list[list[str]] = []

    def before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        misplaced = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                for key, value in optimizer.state.get(param, {}).items():
                    if key != "step" and torch.is_tensor(value) and value.device != param.device:
                        misplaced.append(f"{key} on {value.device}, parameter on {param.device}")
        steps.append(misplaced)

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        yield steps
    finally:
        handle.remove()


def _without_timings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _assert_same(resumed: Any, uninterrupted: Any, exact: bool, where: str = "") -> None:
    """Nested states equal: tensors bit for bit (``exact``) or within float tolerance."""
    if torch.is_tensor(uninterrupted):
        if exact:
            if not torch.equal(resumed, uninterrupted):
                gap = (resumed.double() - uninterrupted.double()).abs().max().item()
                pytest.fail(f"{where} differs from the uninterrupted run's (by up to {gap:.3g})")
        else:
            torch.testing.assert_close(resumed, uninterrupted, rtol=1e-2, atol=5e-3, msg=where)
    elif isinstance(uninterrupted, dict):
        assert resumed.keys() == uninterrupted.keys(), where
        for key, value in uninterrupted.items():
            _assert_same(resumed[key], value, exact, f"{where}[{key!r}]")
    elif isinstance(uninterrupted, list | tuple):
        assert len(resumed) == len(uninterrupted), where
        for i, value in enumerate(uninterrupted):
            _assert_same(resumed[i], value, exact, f"{where}[{i}]")
    elif exact or not isinstance(uninterrupted, float):
        assert resumed == uninterrupted, f"{where}: {resumed!r} != {uninterrupted!r}"
    else:
        assert resumed == pytest.approx(uninterrupted, rel=1e-2, abs=1e-3), where


@pytest.mark.parametrize("device", DEVICES)
def test_a_resumed_run_is_the_run_that_was_not_interrupted(
    small_set: Path, tmp_path: Path, device: str
) -> None:
    config = _config(small_set, device)
    assert read_dataset_info(str(small_set)).counts == {"train": 14, "val": 4, "test": 2}
    assert _fit(config, tmp_path, "interrupted", interrupt_after=1) == [1]
    assert _fit(config, tmp_path, "uninterrupted") == [1, 2]

    with _watched_steps() as steps:
        resumed_epochs = _fit(config, tmp_path, "interrupted")
    # The resumed run trains epoch 2 only: epoch 1 is neither trained nor reported again.
    assert resumed_epochs == [2]
    assert len(steps) == STEPS_PER_EPOCH
    # The first step after the resume moves the loaded AdamW moments: they sit where
    # their parameters do (on CUDA, a step would otherwise fail or copy every time).
    assert steps[0] == [] and all(s == [] for s in steps)

    resumed = tmp_path / "interrupted" / "epoch-0002"
    uninterrupted = tmp_path / "uninterrupted" / "epoch-0002"
    exact = device == "cpu"
    resumed_state, uninterrupted_state = load_checkpoint(resumed), load_checkpoint(uninterrupted)
    for part in ("model", "optimizer", "scheduler", "epoch", "config"):
        _assert_same(resumed_state[part], uninterrupted_state[part], exact, part)
    assert uninterrupted_state["optimizer"]["state"], "the optimizer kept no state to compare"
    assert uninterrupted_state["scheduler"]["last_epoch"] == 2 * STEPS_PER_EPOCH
    _assert_same(
        _without_timings([resumed_state["metrics"]]),
        _without_timings([uninterrupted_state["metrics"]]),
        exact,
        "metrics",
    )
    history = _without_timings(read_history(resumed))
    assert [row["epoch"] for row in history] == [1, 2]
    _assert_same(history, _without_timings(read_history(uninterrupted)), exact, "history")
