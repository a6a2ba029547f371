"""Test-only worker functions: the real training loop, watched, and crashed once on request.

A :class:`WatchedWorker` runs in place of ``train_fn_per_worker`` in a ``TorchTrainer``
built with the project's own scaling and run configs (:func:`create_watched_trainer`).
Every worker process appends a line per reported
epoch to a log (its pid, rank and the epoch), so a test can tell at which epoch
each worker group started; on request the last rank kills its own process in
the middle of an epoch, once (a marker file remembers), as a crashed node or
an out-of-memory kill would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.cloudpickle
import ray.train
from ray.train.torch import TorchTrainer

from cars.cluster.train import create_run_config, create_scaling_config
from cars.config import TrainConfig
from cars.runs import read_run
from cars.storage import join_path


@dataclass(frozen=True)
class WatchedWorker:
    """``train_fn_per_worker`` with an epoch log and an optional crash.

    Args:
        log: the file every worker appends its reported epochs to (JSON lines).
        crash_in_epoch: the epoch (1-based) of the first worker group in whose
            middle the last rank dies; ``None`` for no crash.
        marker: the file that records the crash, so that it happens once.
        run_dir: the Train run's folder. When given, the crash waits until Ray
            Train has recorded the checkpoint of the epoch before it: a worker
            that dies before the controller has collected its last report
            rightly runs that epoch again.
        run_path: where the run persists its checkpoints (set by
            :func:`create_watched_trainer`).
    """

    log: str
    crash_in_epoch: int | None = None
    marker: str | None = None
    run_dir: str | None = None
    run_path: str = ""

    def __call__(self, loop_config: dict[str, Any]) -> None:
        import ray.train

        import cars.cluster.worker as loop
        from cars.cluster.train import train_fn_per_worker

        context = ray.train.get_context()
        rank, world_size = context.get_world_rank(), context.get_world_size()
        report, train_one_epoch = ray.train.report, loop.train_one_epoch
        epochs_started = 0

        def logged_report(metrics: dict[str, Any], **kwargs: Any) -> None:
            record = {"pid": os.getpid(), "rank": rank, "epoch": metrics["epoch"]}
            with Path(self.log).open("a") as f:
                f.write(json.dumps(record) + "\n")
            report(metrics, **kwargs)

        def crashing_epoch(model: Any, loader: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal epochs_started
            epochs_started += 1
            if self._crashes_now(epochs_started, rank, world_size):
                loader = self._die_after_one_batch(loader, epochs_started - 1)
            return train_one_epoch(model, loader, *args, **kwargs)

        ray.train.report = logged_report
        loop.train_one_epoch = crashing_epoch
        train_fn_per_worker(loop_config, run_path=self.run_path)

    def _crashes_now(self, epochs_started: int, rank: int, world_size: int) -> bool:
        if self.crash_in_epoch is None or self.marker is None or rank != world_size - 1:
            return False
        return epochs_started == self.crash_in_epoch and not Path(self.marker).exists()

    def _die_after_one_batch(self, loader: Any, recorded_epoch: int) -> Iterator[Any]:
        for i, batch in enumerate(loader):
            if i == 1:
                self._wait_until_recorded(recorded_epoch)
                Path(self.marker or "").write_text(f"{time.time()}\n")
                os._exit(1)
            yield batch

    def _wait_until_recorded(self, epoch: int, timeout_s: float = 120) -> None:
        if self.run_dir is None or epoch < 1:
            return
        deadline = time.monotonic() + timeout_s
        while recorded_by_train(Path(self.run_dir)) < epoch:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray Train never recorded epoch {epoch} in {self.run_dir}")
            time.sleep(0.1)


def create_watched_trainer(
    config: TrainConfig, *, storage_path: str, name: str, watched: WatchedWorker
) -> TorchTrainer:
    """The ``TorchTrainer`` that ``create_trainer`` builds, its workers watched."""
    return TorchTrainer(
        dataclasses.replace(watched, run_path=join_path(storage_path, name)),
        train_loop_config=config.to_dict(),
        scaling_config=create_scaling_config(config),
        run_config=create_run_config(config, storage_path=storage_path, name=name),
    )


# Ray Train's record of a worker group's run, beside its checkpoints.
TRAIN_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def recorded_by_train(run: Path) -> int:
    """The epoch of the last checkpoint Ray Train recorded in a worker group's snapshot; 0 if none.

    Its folder is uploaded before the controller records it, so the folder alone
    says nothing: a worker that dies in between rightly runs that epoch again.
    """
    if not (run / TRAIN_SNAPSHOT_FILE).exists():
        return 0
    try:
        result = ray.train.Result.from_path(str(run))
    except Exception:  # its snapshot caught mid-write
        return 0
    return int((result.metrics or {}).get("epoch", 0))


def recorded_epoch(run: Path) -> int:
    """The epoch of the last checkpoint recorded for a run; 0 if none yet.

    For a worker group's run, the one Ray Train recorded in its snapshot (a folder
    uploaded but not yet recorded is trained again after a crash); for a run that
    trained in its own process, its latest checkpoint.
    """
    if not (run / TRAIN_SNAPSHOT_FILE).exists():
        latest = read_run(str(run)).latest
        return 0 if latest is None else latest.epoch
    return recorded_by_train(run)


def read_epoch_log(path: Path) -> list[dict[str, int]]:
    """The lines the workers logged, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def epochs_by_process(log: list[dict[str, int]], rank: int) -> list[list[int]]:
    """The epochs each process of ``rank`` reported, one list per process, in order."""
    runs: dict[int, list[int]] = {}
    for record in log:
        if record["rank"] == rank:
            runs.setdefault(record["pid"], []).append(record["epoch"])
    return list(runs.values())


# The workers cannot import this module (the tests folder is not a package on
# their path), so its classes travel to them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
