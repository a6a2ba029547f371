"""Which GPU each trial, worker and prediction actor gets, on GPUs declared to Ray.

One real multi-node Ray (``ray.cluster_utils.Cluster``) of two nodes that declare
GPUs this machine does not have, 12 CPUs per GPU as a GPU cluster's nodes have:
Ray assigns their ids and sets ``CUDA_VISIBLE_DEVICES`` as it would there. The
project's own sweeps and prediction job run on it; each process's device pick is
recorded and it then computes on the CPU (:mod:`simulated_gpus`). A pick is right
when the device it names, read through the process's ``CUDA_VISIBLE_DEVICES``, is
the GPU Ray assigned it.

Each node declares 2 GPUs by default: every trial the ``full`` preset runs at once
holds four processes of about 0.4 GB each (its driver, Train controller and two
workers), which a shared CI machine holds for 2 trials, not for the 8 of two
8-GPU nodes. ``CARS_TEST_GPUS_PER_NODE=8`` runs the same tests on two 8-GPU nodes
(some 14 GB of memory).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors, list_placement_groups
from simulated_gpus import clear, placement_hook, read_records, release
from state import connected_cluster, wait_for

from cars.cli import parse_predict_args
from cars.cluster.runtime import PREEMPTION_WATCHER_ENV
from cars.cluster.sweep import SweepOutcome, plan_resources, run_sweep
from cars.prediction.job import run_prediction
from cars.runs import read_run
from cars.sweep_config import create_sweep_config

pytestmark = pytest.mark.slow

NODES = 2
GPUS_PER_NODE = int(os.environ.get("CARS_TEST_GPUS_PER_NODE", "2"))
# As a GPU node's (96 for 8 GPUs): more than the full preset's 8 per worker, so
# that GPUs bound how many of its trials run at once.
CPUS_PER_NODE = 12 * GPUS_PER_NODE
DECLARED_GPUS = NODES * GPUS_PER_NODE
# The full preset's trials train on two GPUs each.
FULL_AT_ONCE = DECLARED_GPUS // 2
WAIT_S = 600


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The two-node GPU cluster, joined with the recording hook; yields the records' folder."""
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    # An earlier CPU run in this process hid the GPUs (CUDA_VISIBLE_DEVICES=""); the
    # nodes started from here would inherit that and refuse the GPUs they declare.
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    folder = tmp_path_factory.mktemp("placement")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "num_gpus": 0,
            # Ray starts a worker process per declared CPU for the first driver:
            # dozens of them on this machine's two cores would take minutes.
            "_system_config": {"prestart_worker_first_driver": False},
        },
    )
    for _ in range(NODES):
        cluster.add_node(num_cpus=CPUS_PER_NODE, num_gpus=GPUS_PER_NODE)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        runtime_env={"worker_process_setup_hook": placement_hook(str(folder))},
        logging_level="WARNING",
    )
    try:
        yield folder
    finally:
        ray.shutdown()
        cluster.shutdown()


def _run_held(
    folder: Path, run: Callable[[], Any], ready: Callable[[], bool], read: Callable[[], Any]
) -> tuple[Any, Any]:
    """``run()`` with every pick held until ``ready()``; its result and what ``read()`` saw then.

    A run that ends before it is ready (its processes failed before they picked)
    fails the test at once.
    """
    clear(folder, hold=True)
    ended = threading.Event()
    seen: dict[str, Any] = {}

    def watch() -> None:
        try:
            wait_for(lambda: ready() or ended.is_set(), WAIT_S, "the processes' device picks")
            if not ready():
                raise AssertionError("the run ended before its processes picked their devices")
            seen["state"] = read()
        except BaseException as error:  # raised again in the test's thread
            seen["error"] = error
        finally:
            release(folder)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run()
    finally:
        ended.set()
        release(folder)
        watcher.join()
    if "error" in seen:
        raise seen["error"]
    return result, seen["state"]


def _picks(folder: Path) -> list[dict[str, Any]]:
    """The device picks recorded since the folder was last cleared, oldest first."""
    return read_records(folder)


def _assigned_gpu(pick: dict[str, Any]) -> str:
    """The one GPU Ray assigned the process, checked to be the one its device names."""
    assert pick["use_gpu"] and len(pick["gpu_ids"]) == 1, pick
    (gpu,) = pick["gpu_ids"]
    visible = pick["visible_before"].split(",")
    kind, _, index = pick["device"].partition(":")
    assert kind == "cuda" and index, pick
    # CUDA numbers the visible devices from 0: the device must be this process's GPU.
    assert int(index) < len(visible) and visible[int(index)] == gpu, pick
    return gpu


def _sweep(name: str, data: Path, storage: Path, **overrides: Any) -> Any:
    return create_sweep_config(
        "smoke",
        name,
        data=str(data),
        storage=str(storage),
        weights="none",
        num_samples=1,
        epochs=1,
        image_size=32,
        loader_workers=0,
        **overrides,
    )


@pytest.fixture(scope="module")
def one_worker_gpu_sweep(
    gpu_cluster: Path, prepared_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SweepOutcome, list[dict[str, Any]]]:
    """A one-worker GPU trial per regime, held until all have picked (so they run at once).

    Three trials on two nodes: one node holds two of them, so some trial has a GPU
    other than its node's first.
    """
    sweep = _sweep(
        "gpu-trials", prepared_set, tmp_path_factory.mktemp("runs"), num_workers=1, use_gpu=True
    )
    assert plan_resources(sweep).local_mode
    outcome, _ = _run_held(
        gpu_cluster,
        lambda: run_sweep(sweep),
        lambda: len(_picks(gpu_cluster)) >= sweep.num_trials,
        lambda: None,
    )
    return outcome, _picks(gpu_cluster)


def test_concurrent_one_worker_trials_each_train_on_their_own_gpu(
    one_worker_gpu_sweep: tuple[SweepOutcome, list[dict[str, Any]]],
) -> None:
    outcome, picks = one_worker_gpu_sweep
    assert outcome.results.num_errors == 0
    # The trials trained in their own processes (no worker group), both at once.
    assert len(picks) == 3 and not any(p["in_train_worker"] for p in picks)
    assert len({p["run"] for p in picks}) == 3
    gpus = [(p["node"], _assigned_gpu(p)) for p in picks]
    assert len(set(gpus)) == len(gpus), picks
    for result in outcome.results:
        assert result.metrics["epoch"] == 1  # and then trained, on the CPU


def test_cpu_trials_see_no_gpu_on_a_gpu_cluster(
    gpu_cluster: Path, prepared_set: Path, tmp_path: Path
) -> None:
    sweep = _sweep(
        "cpu-trials", prepared_set, tmp_path, regimes=("frozen",), num_workers=1, use_gpu=False
    )
    clear(gpu_cluster, hold=False)
    outcome = run_sweep(sweep)
    assert outcome.results.num_errors == 0
    (pick,) = _picks(gpu_cluster)
    assert pick["device"] == "cpu" and pick["gpu_ids"] == []
    # CUDA in that process would find no GPU to fall back on.
    assert pick["visible_after"] == ""


def test_predict_gpu_actors_get_one_gpu_each_and_the_pool_every_gpu(
    gpu_cluster: Path,
    one_worker_gpu_sweep: tuple[SweepOutcome, list[dict[str, Any]]],
    synthetic_source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcome, _ = one_worker_gpu_sweep
    run = read_run(str(next(Path(outcome.path).glob("train-*"))))
    assert run.latest is not None
    # Four photos: each read task is a process that loads torch to decode.
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sorted((synthetic_source / "cars_test").rglob("*.jpg"))[:4]:
        shutil.copy(photo, photos / photo.name)
    argv = ["--model", run.latest.location, "--images", str(photos)]
    argv += ["--out", str(tmp_path / "out"), "--gpu", "--batch-size", "1"]
    clear(gpu_cluster, hold=False)
    predicted = run_prediction(parse_predict_args(argv))
    assert predicted.images == 4 and predicted.errors == 0
    # As large a pool as the GPUs allow: one actor per declared GPU.
    assert predicted.actors == DECLARED_GPUS
    assert f"on up to {DECLARED_GPUS} GPU actor(s)" in capsys.readouterr().out
    picks = _picks(gpu_cluster)
    assert picks and not any(p["in_train_worker"] for p in picks)
    gpus = [(p["node"], _assigned_gpu(p)) for p in picks]
    assert len(set(gpus)) == len(gpus), picks
    # Ray's record of the pool's actors: one GPU each.
    actors = list_actors(
        address=connected_cluster(), detail=True, limit=1000, raise_on_missing_output=False
    )
    pool = [a for a in actors if "BatchClassifier" in a.class_name]
    # Every pick is a pool actor's; an actor the pool scaled down before its
    # constructor ran picked nothing.
    assert {p["pid"] for p in picks} <= {a.pid for a in pool}, (picks, pool)
    assert all(a.required_resources.get("GPU") == 1 for a in pool), pool


def _gpu_placement(address: str) -> dict[str, Any]:
    """The placement groups that hold GPUs and those still waiting, from Ray's state."""
    groups = list_placement_groups(address=address, detail=True, limit=1000)
    holding = [
        g
        for g in groups
        if g.state == "CREATED" and any(b["unit_resources"].get("GPU") for b in g.bundles)
    ]
    return {
        "groups": len(holding),
        "gpus": sum(b["unit_resources"].get("GPU", 0) for g in holding for b in g.bundles),
        "pending": [g.placement_group_id for g in groups if g.state == "PENDING"],
        "available_gpus": ray.available_resources().get("GPU", 0),
        "workers": len(
            list_actors(
                address=address,
                filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                limit=1000,
            )
        ),
    }


@pytest.fixture(scope="module")
def full_sweep(
    gpu_cluster: Path,
    prepared_set: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SweepOutcome, int, str, dict[str, Any], list[dict[str, Any]]]:
    """The ``full`` preset's plan on the cluster: held once as many trials as it says run."""
    sweep = create_sweep_config(
        "full",
        "full-plan",
        data=str(prepared_set),
        storage=str(tmp_path_factory.mktemp("runs")),
        weights="none",
        # More trials than run at once (one per regime and sample): the plan must hold
        # the rest back.
        num_samples=FULL_AT_ONCE // 3 + 1,
        epochs=1,
        image_size=32,
        loader_workers=0,
    )
    plan = plan_resources(sweep)
    assert plan.num_workers == 2 and not plan.local_mode
    address = connected_cluster()
    logs: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())  # type: ignore[method-assign]
    sweep_logger = logging.getLogger("cars.cluster.sweep")
    sweep_logger.addHandler(handler)
    level = sweep_logger.level
    sweep_logger.setLevel(logging.INFO)
    try:
        outcome, seen = _run_held(
            gpu_cluster,
            lambda: run_sweep(sweep),
            # Every declared GPU picked by a held worker.
            lambda: len(_picks(gpu_cluster)) >= DECLARED_GPUS,
            lambda: _gpu_placement(address),
        )
    finally:
        sweep_logger.removeHandler(handler)
        sweep_logger.setLevel(level)
    printed = next(line for line in logs if " at a time" in line)
    return outcome, sweep.num_trials, printed, seen, _picks(gpu_cluster)


def test_the_full_preset_runs_as_many_trials_at_once_as_its_plan_prints(
    full_sweep: tuple[SweepOutcome, int, str, dict[str, Any], list[dict[str, Any]]],
) -> None:
    outcome, trials, printed, seen, picks = full_sweep
    # Two GPUs per trial: half as many trials at once as GPUs, the rest after them.
    plan = re.fullmatch(r"(\d+) trials, (\d+) at a time, each 2 workers x 8 CPUs \+ 1 GPU", printed)
    assert plan is not None, printed
    at_once = int(plan[2])
    assert at_once == FULL_AT_ONCE and int(plan[1]) == trials > at_once
    # Ray's state, with the held trials' workers in place: as many worker groups of two
    # GPUs as the plan said hold every GPU, and no trial waits for GPUs that are not there.
    assert seen == {
        "groups": at_once,
        "gpus": DECLARED_GPUS,
        "pending": [],
        "available_gpus": 0,
        "workers": 2 * FULL_AT_ONCE,
    }
    assert outcome.results.num_errors == 0 and len(outcome.results) == trials
    assert len({p["run"] for p in picks}) == trials


def test_a_two_worker_trials_workers_each_train_on_their_own_gpu(
    full_sweep: tuple[SweepOutcome, int, str, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, trials, _, _, picks = full_sweep
    assert all(p["in_train_worker"] for p in picks) and len(picks) == 2 * trials
    by_run: dict[str, list[dict[str, Any]]] = {}
    for pick in picks:
        by_run.setdefault(pick["run"], []).append(pick)
    for workers in by_run.values():
        assert sorted(w["rank"] for w in workers) == [0, 1]
        gpus = {(w["node"], _assigned_gpu(w)) for w in workers}
        assert len(gpus) == 2, workers
    # The trials that ran first held every GPU at once, each its own two.
    first = Counter((p["node"], p["gpu_ids"][0]) for p in picks[: 2 * FULL_AT_ONCE])
    assert len(first) == DECLARED_GPUS
