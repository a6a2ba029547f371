"""A node lost mid-epoch: the sweep finishes on the remaining node from its last checkpoint.

A real multi-node Ray on this machine (``ray.cluster_utils.Cluster``): a head
that cannot hold a trial, and a worker node that runs everything of the trial
(its Tune driver, Ray Train's controller, the workers). A second worker node
joins once the trial runs, then the first node is removed once the trial has
recorded its first epoch, as a cloud would lose a machine. Its workers wait
before the second epoch until then (``held_node``), so that the loss comes
mid-run however fast the epochs are.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import ray
from faults import TRAIN_SNAPSHOT_FILE
from held_node import hold_on_node
from ray.cluster_utils import Cluster
from ray.util.state import list_actors
from state import connected_cluster

from cars.cluster.runtime import PREEMPTION_WATCHER_ENV
from cars.cluster.sweep import SweepOutcome, run_sweep
from cars.learn.history import read_history
from cars.report import write_report
from cars.sweep_config import create_sweep_config

pytestmark = pytest.mark.slow

EPOCHS = 3
MiB = 1024**2


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, object]]:
    """A head with no CPUs and too little memory for a trial driver, and one 2-CPU node."""
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "memory": 64 * MiB,
            # Declare a lost node dead within seconds, not Ray's default half a minute.
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 3,
            },
        },
    )
    first = cluster.add_node(num_cpus=2, memory=2048 * MiB, resources={"first_node": 1})
    # The first node's workers wait before the second epoch until the node is lost, so
    # that the loss comes mid-run however fast the epochs are.
    ray.init(
        address=cluster.address,
        runtime_env={"worker_process_setup_hook": hold_on_node(first.node_id, epoch=2)},
        logging_level="WARNING",
    )
    try:
        yield cluster, first
    finally:
        ray.shutdown()
        cluster.shutdown()


def _recorded_epochs(run: Path) -> list[int]:
    """The epochs whose checkpoints Ray Train has recorded in the run's snapshot."""
    if not (run / TRAIN_SNAPSHOT_FILE).exists():
        return []
    try:
        result = ray.train.Result.from_path(str(run))
    except Exception:  # caught mid-write
        return []
    return sorted(metrics["epoch"] for _, metrics in result.best_checkpoints)


def _file_times(run: Path) -> dict[Path, float]:
    return {f: f.stat().st_mtime for f in run.glob("epoch-*/*")}


class NodeLoss:
    """Adds a second node once the trial runs, then removes the first one mid-epoch."""

    def __init__(self, cluster: Cluster, first: object, sweep_dir: Path) -> None:
        self.cluster, self.first, self.sweep_dir = cluster, first, sweep_dir
        self.removed_at: float | None = None
        self.files_before: dict[Path, float] = {}
        self.history_before: list[dict] = []
        self.lost_actors: set[str] = set()

    def run(self) -> None:
        """Add the replacement, then remove the first node (in the main thread: starting
        a node installs signal handlers)."""
        first_id = self.first.node_id
        # The replacement joins once the trial's workers hold the first node,
        # so that the whole trial runs there until it is lost.
        self._wait_for(lambda: "RayTrainWorker" in self._actors_on(first_id), "the workers")
        self.cluster.add_node(num_cpus=2, memory=2048 * MiB)
        # Lost once an epoch is recorded: the trial has something to resume from, and
        # its workers wait before the next one (the module's hook). Which epoch the
        # trial resumed from is read from its history afterwards, not guessed here.
        run = self._wait_for(self._first_recorded_run, "the first checkpoint")
        self.lost_actors = self._actors_on(first_id)
        self.files_before = _file_times(run)
        self.history_before = read_history(str(run / f"epoch-{_recorded_epochs(run)[0]:04d}"))
        self.removed_at = time.time()
        self.cluster.remove_node(self.first, allow_graceful=False)

    def _actors_on(self, node_id: str) -> set[str]:
        try:
            alive = list_actors(
                address=connected_cluster(), filters=[("state", "=", "ALIVE")], limit=1000
            )
        except Exception:  # the state API is still starting
            return set()
        return {actor.class_name for actor in alive if actor.node_id == node_id}

    def _first_recorded_run(self) -> Path | None:
        return next((r for r in self.sweep_dir.glob("train-*") if _recorded_epochs(r)), None)

    def _wait_for(self, found: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def survived(
    cluster: tuple[Cluster, object], prepared_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SweepOutcome, NodeLoss]:
    storage = tmp_path_factory.mktemp("shared")
    config = create_sweep_config(
        "smoke",
        "node-loss",
        data=str(prepared_set),
        storage=str(storage),
        weights="none",
        regimes=("frozen",),
        num_samples=1,
        epochs=EPOCHS,
        image_size=32,
        gradcam_images=2,
    )
    loss = NodeLoss(*cluster, storage / "node-loss")
    # Tune runs in a thread (it supports that); the main thread loses the node.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sweep = pool.submit(run_sweep, config)
        loss.run()
        return sweep.result(timeout=600), loss


def _resumed_from(history: list[dict], removed_at: float) -> int:
    """The last epoch of the final history that had started before the node was lost."""
    started = [row["epoch_started_at"] < removed_at for row in history]
    # The epochs run before the loss come first, those run after it follow.
    assert started == sorted(started, reverse=True), started
    return sum(started)


def test_everything_of_the_trial_ran_on_the_lost_node(survived: tuple[SweepOutcome, NodeLoss]):
    outcome, loss = survived
    assert loss.removed_at is not None
    assert {"RayTrainWorker", "TrainController"} <= loss.lost_actors, loss.lost_actors
    # Removed after the first checkpoint, with the second epoch not begun.
    run = next(Path(outcome.path).glob("train-*"))
    history = read_history(str(run / f"epoch-{EPOCHS:04d}"))
    assert _resumed_from(history, loss.removed_at) == 1


def test_the_trial_finishes_from_its_last_checkpoint(survived: tuple[SweepOutcome, NodeLoss]):
    outcome, loss = survived
    assert outcome.results.num_errors == 0
    (result,) = list(outcome.results)
    run = next(Path(outcome.path).glob("train-*"))
    assert _recorded_epochs(run)[-1] == EPOCHS
    history = read_history(str(run / f"epoch-{EPOCHS:04d}"))
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    # The epochs finished before the loss were not run again: the curve keeps
    # their first results (a rerun would have other timings), their checkpoints
    # were not rewritten, and the later ones were written after the loss.
    assert loss.removed_at is not None
    assert history[: len(loss.history_before)] == loss.history_before
    kept = f"epoch-{_resumed_from(history, loss.removed_at):04d}"
    after = _file_times(run)
    for file, written in loss.files_before.items():
        if file.parent.name <= kept and file in after:
            assert after[file] == written, file
    later = [f for f in after if f.parent.name > kept]
    assert later and all(after[f] > loss.removed_at for f in later)
    # Tune heard of each epoch at most once.
    log = Path(result.path) / "result.json"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    epochs = [row["epoch"] for row in rows]
    assert len(epochs) == len(set(epochs))
    assert epochs[-1] == EPOCHS


def test_the_report_is_written_after_the_loss(
    survived: tuple[SweepOutcome, NodeLoss], tmp_path_factory: pytest.TempPathFactory
) -> None:
    outcome, _ = survived
    report = Path(write_report(outcome.path, str(tmp_path_factory.mktemp("reports"))).path)
    assert (report / "summary.md").is_file()
    assert (report / "best" / "model.safetensors").is_file()
