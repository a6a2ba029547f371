"""One real local Ray shared by the integration tests, and one smoke sweep they read.

Starting Ray costs seconds and a sweep minutes on 2 CPUs, so each is paid once per
session: every test that asks for ``ray_cluster`` runs on the same 2-CPU local Ray
(the tests that use it are ordered first, see ``tests/conftest.py``), and the tests
that only read a finished sweep and its report read ``smoke_sweep`` and
``smoke_report``. Tests that kill, crash or lose things keep clusters of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray
from job_runner import job_env

from cars.cluster.runtime import WORKER_NICENESS_ENV, init_ray
from cars.cluster.sweep import SweepOutcome, run_sweep
from cars.report import write_report
from cars.sweep_config import create_sweep_config

# Fail fast instead of waiting the default minute for a worker group that cannot start.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "45")
# The clusters the tests start themselves (`ray start` heads, `Cluster` nodes) run their
# workers at the tests' priority, as a job's own local Ray does (see `init_ray`): on a
# machine busy with other work, Ray's default 15 steps nicer would starve them.
os.environ.setdefault(WORKER_NICENESS_ENV, "0")

SHARED_RAY_FIXTURE = "ray_cluster"


class SharedRay:
    """The shared local Ray: started when a test needs it, shut down when one must not see it.

    Never alive while a test runs a job in its own process or a cluster of its own:
    with two local Ray instances, Ray's state API in this process (the tests read
    Ray's state) refuses to pick one, and each test's cluster is then its own.
    """

    running = False

    @classmethod
    def start(cls) -> None:
        if cls.running and ray.is_initialized():
            return
        if ray.is_initialized():  # a test's own cluster, left connected
            ray.shutdown()
        init_ray(num_cpus=2)  # 2 CPUs, as on the CI machine
        cls.running = True

    @classmethod
    def stop(cls) -> None:
        if cls.running:
            ray.shutdown()
            cls.running = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures: the shared Ray up for a test that uses it, down otherwise."""
    if SHARED_RAY_FIXTURE in getattr(item, "fixturenames", ()):
        SharedRay.start()
    else:
        SharedRay.stop()


@pytest.fixture(scope="session", autouse=True)
def ray_tests_in_one_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fails a run whose Ray tests a second pytest-xdist process took up.

    Two processes running them at once would start two local Rays (see ``SharedRay``),
    and one's ``ray stop`` would end the other's clusters; ``tests/conftest.py`` sends
    them all to one. Each process of a run has a base folder of its own in the run's.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    claim = tmp_path_factory.getbasetemp().parent / "ray-tests-process"
    try:
        with claim.open("x") as out:
            out.write(worker)
    except FileExistsError:
        owner = claim.read_text()
        if owner != worker:
            pytest.fail(
                f"the Ray tests run in two pytest-xdist processes, {owner} and {worker}: "
                "tests/conftest.py's scheduler must send every test under "
                "tests/integration/ to one (or run with -n 0)"
            )


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """The shared 2-CPU local Ray (see ``SharedRay``), shut down after the session."""
    SharedRay.start()
    yield
    SharedRay.stop()


@pytest.fixture(scope="session")
def smoke_sweep(
    ray_cluster: None, prepared_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> SweepOutcome:
    """A finished smoke sweep: 2 regimes x 2 trials of 2 workers, ASHA over 2 epochs.

    Two regimes, so that the report compares them; two trials each, so that ASHA
    has a trial to stop and each regime a best to choose; two workers, so that
    every trial is a Ray Train worker group. The preset's 64 px inputs: at 32 px
    Xception's last feature map is a single cell, and the report's Grad-CAMs, which
    its readers measure, are blank.

    It runs beside another local Ray instance, as a sweep does when two jobs run at
    once on a laptop: Ray Train releases a finished trial's worker group through Ray's
    state API, which must find the sweep's own instance among the two, or the next
    trial's group waits for CPUs that never come back.
    """
    config = create_sweep_config(
        "smoke",
        "four-trials",
        data=str(prepared_set),
        storage=str(tmp_path_factory.mktemp("runs")),
        weights="none",
        regimes=("frozen", "finetune"),
        num_samples=2,
        epochs=2,
        grace_period=1,
        reduction_factor=2,
        num_workers=2,
    )
    with another_local_ray():
        return run_sweep(config)


@contextmanager
def another_local_ray() -> Iterator[None]:
    """A local Ray instance of another process (as another job's) while the body runs."""
    code = "import ray, time; ray.init(num_cpus=1); print('up', flush=True); time.sleep(3600)"
    other = subprocess.Popen(
        [sys.executable, "-c", code], env=job_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "up"
        yield
    finally:
        other.kill()
        other.wait()


@pytest.fixture(scope="session")
def smoke_report(smoke_sweep: SweepOutcome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of ``smoke_sweep``, written once."""
    return Path(write_report(smoke_sweep.path, str(tmp_path_factory.mktemp("reports"))).path)


@pytest.fixture(scope="session")
def demo_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``--storage`` of the tests that run the built-in demo, as a user's runs folder.

    The demo trains its source model there once, keyed by what it depends on (the image
    size among them), and the next demo run reuses it, as a user's second run does.
    """
    return tmp_path_factory.mktemp("demo-runs")
