"""One-worker runs in Ray Train's local mode: checkpointed and resumed as a worker group's."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.util.state import list_actors

from cars.cluster.local_train import CHECKPOINT_PATH_KEY, LocalTrainRun
from cars.cluster.sweep import plan_resources, run_sweep
from cars.cluster.train import create_local_trainer, read_train_result
from cars.config import TrainConfig
from cars.learn.history import read_checkpoint_history
from cars.sweep_config import create_sweep_config

pytestmark = pytest.mark.slow


def _start(config: TrainConfig, storage: Path) -> LocalTrainRun:
    return LocalTrainRun(
        lambda on_report: create_local_trainer(
            config, storage_path=str(storage), name="local", on_report=on_report
        )
    )


def test_a_local_run_checkpoints_every_epoch_and_resumes_after_a_stop(
    prepared_set: Path, tmp_path: Path
) -> None:
    config = TrainConfig(
        data=str(prepared_set), regime="frozen", epochs=3, batch_size=8, image_size=32
    )
    first = _start(config, tmp_path)
    report = first.next_report()
    assert report is not None and report["epoch"] == 1 and report["world_size"] == 1
    assert Path(report[CHECKPOINT_PATH_KEY]) == tmp_path / "local" / "epoch-0001"
    first.stop()  # as a scheduler stops a trial: no further epoch is trained
    stopped = read_train_result(str(tmp_path / "local"))
    assert stopped is not None and stopped.metrics["epoch"] == 1

    second = _start(config, tmp_path)
    epochs = []
    while (report := second.next_report()) is not None:
        epochs.append(report["epoch"])
    assert epochs == [2, 3]  # from the stored checkpoint, not from scratch
    result = read_train_result(str(tmp_path / "local"))
    assert result is not None and Path(result.checkpoint.path).name == "epoch-0003"
    assert [e["epoch"] for e in read_checkpoint_history(result.checkpoint)] == [1, 2, 3]
    # Ray Train's CheckpointConfig(num_to_keep=2) prunes as with a worker group.
    assert len(list((tmp_path / "local").glob("epoch-*"))) == config.checkpoints_to_keep


def _recorded_epoch(sweep_dir: Path) -> int:
    """The epoch of the last checkpoint in the sweep's one Train run's snapshot; 0 if none."""
    for run in sweep_dir.glob("train-*"):
        try:
            result = read_train_result(str(run))
        except Exception:  # its snapshot caught mid-write
            return 0
        return 0 if result is None else int(result.metrics.get("epoch", 0))
    return 0


def _trial_pid() -> int:
    actors = list_actors(filters=[("state", "=", "ALIVE")])
    pids = [a.pid for a in actors if "Trial" in a.class_name or "Trainable" in a.class_name]
    assert len(pids) == 1, actors
    return pids[0]


def test_tune_restarts_a_killed_local_trial_from_its_last_checkpoint(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    sweep = create_sweep_config(
        "smoke",
        "killed",
        data=str(prepared_set),
        storage=str(tmp_path),
        weights="none",
        regimes=("frozen",),
        augments=("none",),
        num_samples=1,
        num_workers=1,
        epochs=4,
        image_size=32,
        max_failures=1,
    )
    assert plan_resources(sweep).local_mode
    killed_at: list[float] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while _recorded_epoch(tmp_path / "killed") < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        os.kill(_trial_pid(), signal.SIGKILL)
        killed_at.append(time.time())

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    outcome = run_sweep(sweep)
    killer.join()

    assert killed_at, "the trial never wrote its first checkpoint"
    assert outcome.results.num_errors == 0
    (run,) = (tmp_path / "killed").glob("train-*")
    result = read_train_result(str(run))
    history = read_checkpoint_history(result.checkpoint)
    # Every epoch once: the restarted trial went on from the last checkpoint.
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    assert history[0]["epoch_started_at"] < killed_at[0] < history[-1]["epoch_started_at"]
    # The killed trial's reservation was released with it.
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2)
