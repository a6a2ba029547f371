"""A worker group that starts slowly gets the time it needs; one that cannot start ends.

A real multi-node Ray on this machine (``ray.cluster_utils.Cluster``) made slow on
purpose: its head holds one CPU, so a run of two one-CPU workers cannot be placed
until a second node joins. The run is the product's own (``run_training`` with its
trainer, failure budget and start-up settings); only the node's arrival is staged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from state import wait_for

from cars.cluster.runtime import PREEMPTION_WATCHER_ENV
from cars.cluster.train import WorkerStartError, run_training
from cars.config import TrainConfig

pytestmark = pytest.mark.slow

MiB = 1024**2


@pytest.fixture
def one_cpu_cluster() -> Iterator[Cluster]:
    """A head with one CPU: too small for two one-CPU workers until a node joins."""
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.connect()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _config(data: Path, **start: Any) -> TrainConfig:
    return TrainConfig(
        data=str(data), regime="frozen", epochs=1, batch_size=8, image_size=32,
        num_workers=2, augment="none", max_failures=0, **start,
    )  # fmt: skip


def _placement_group_states() -> list[str]:
    """The state of every placement group the cluster has made, as its GCS keeps them."""
    return [group["state"] for group in ray.util.placement_group_table().values()]


def test_a_group_placed_on_a_later_try_trains(
    one_cpu_cluster: Cluster,
    prepared_set: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = _config(prepared_set, worker_start_timeout_s=3.0, worker_start_tries=20)
    # The run in a thread; the node joins from the main thread (starting a node installs
    # signal handlers) once a try has timed out: its placement group was given up.
    with ThreadPoolExecutor(max_workers=1) as pool:
        training = pool.submit(run_training, config, storage_path=str(tmp_path), name="slow")
        wait_for(lambda: "REMOVED" in _placement_group_states(), 300, "a try to time out")
        one_cpu_cluster.add_node(num_cpus=1)
        run = training.result(timeout=600)

    assert [row["epoch"] for row in run.history] == [1]
    # The try that timed out, and the one that trained.
    assert len(_placement_group_states()) >= 2
    assert "starting 2 training workers (1 CPU each): waiting up to 3 s" in capfd.readouterr().out


def test_a_group_that_cannot_start_ends_the_run_saying_why(
    one_cpu_cluster: Cluster, prepared_set: Path, tmp_path: Path
) -> None:
    config = _config(prepared_set, worker_start_timeout_s=2.0, worker_start_tries=2)
    with pytest.raises(WorkerStartError) as raised:
        run_training(config, storage_path=str(tmp_path), name="never-starts")
    message = str(raised.value)
    assert "the run's 2 workers did not start: 2 tries of 2 s each found no room" in message
    # Ray Train's controller waited as long as the run said, and no try was left untried.
    assert "timed out after 2.0 seconds waiting for 2 workers" in message
    assert _placement_group_states() == ["REMOVED", "REMOVED"]
    assert "--worker-start-timeout-s" in message
