"""The settings a run of several workers hands Ray Train's controller through the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cars.cluster.train import (
    HEALTH_CHECK_INTERVAL_ENV,
    HEALTH_CHECK_INTERVAL_S,
    WORKER_START_TIMEOUT_ENV,
    create_trainer,
)
from cars.config import TrainConfig


def _create_trainer(tmp_path: Path, **settings: float) -> None:
    config = TrainConfig(data=str(tmp_path), regime="scratch", num_workers=2, **settings)
    create_trainer(config, storage_path=str(tmp_path / "runs"), name="run")


def test_the_controller_polls_its_workers_often_unless_the_user_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Registered with monkeypatch, so that what create_trainer writes is undone after.
    monkeypatch.setenv(WORKER_START_TIMEOUT_ENV, "")
    monkeypatch.setenv(HEALTH_CHECK_INTERVAL_ENV, "")
    monkeypatch.delenv(HEALTH_CHECK_INTERVAL_ENV)
    _create_trainer(tmp_path, worker_start_timeout_s=42.0)
    assert os.environ[HEALTH_CHECK_INTERVAL_ENV] == HEALTH_CHECK_INTERVAL_S
    assert float(HEALTH_CHECK_INTERVAL_S) < 2.0  # Ray's own default
    assert os.environ[WORKER_START_TIMEOUT_ENV] == "42.0"

    monkeypatch.setenv(HEALTH_CHECK_INTERVAL_ENV, "3")
    _create_trainer(tmp_path)
    assert os.environ[HEALTH_CHECK_INTERVAL_ENV] == "3"
