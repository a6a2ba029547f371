"""Shared fixtures; tests are marked ``unit`` or ``integration`` by the folder they live in."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_server import s3_environment

TESTS_DIR = Path(__file__).resolve().parent

# The tiny synthetic sets of the fixtures: 4 classes of 12 training and 4 test
# images each; a quarter of training is held out, so every split has every class
# (train 36 = 9 per class, val 12 = 3 per class, test 16 = 4 per class).
TINY_SET = {"num_classes": 4, "train_per_class": 12, "test_per_class": 4, "seed": 0}
TINY_VAL_FRACTION = 0.25
S3_BUCKET = "cars-test"


# Every test under it starts or joins a Ray: its own local Ray, `ray start` heads (which
# `ray stop` ends with every other Ray of the machine), clusters of several nodes, or the
# session's shared local Ray; and two local Rays at once confuse Ray's state API.
RAY_TESTS = "tests/integration/"
# How much nicer the other tests run beside them: the Ray tests' timing is what a slow
# machine strains, and these take the CPU the Ray tests leave idle.
BESIDE_RAY_NICENESS = 10


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR).parts[0]
        if kind in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, kind))
    # The tests on the shared Ray first, together, so that it starts once (see
    # tests/integration/conftest.py); the order within each group is kept.
    items.sort(key=lambda item: "ray_cluster" not in getattr(item, "fixturenames", ()))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n``: every Ray test in one process, in collection order, the others beside.

    The Ray tests are one unit of work, sent first, so that the process that takes them
    runs them in the order above and nothing else until they are done; the other
    tests' modules go one at a time to whichever process is free. An explicit ``--dist``
    other than ``load`` keeps its own scheduling.
    """
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RayTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return RAY_TESTS if nodeid.startswith(RAY_TESTS) else super()._split_scope(nodeid)

    config.option.loadscopereorder = False  # the work in collection order: Ray tests first
    return RayTestsTogether(config, log)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A process running tests beside the Ray tests runs them nicer (``BESIDE_RAY_NICENESS``)."""
    if item.get_closest_marker("integration") is None and os.environ.get("PYTEST_XDIST_WORKER"):
        niceness = os.nice(0)
        if niceness < BESIDE_RAY_NICENESS:
            os.nice(BESIDE_RAY_NICENESS - niceness)


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw synthetic Stanford Cars folder (devkit layout, test labels included)."""
    from cars.data import SyntheticCars, write_synthetic_cars

    return write_synthetic_cars(
        tmp_path_factory.mktemp("synthetic") / "cars", SyntheticCars(**TINY_SET)
    )


@pytest.fixture(scope="session")
def prepared_set(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared set of ``synthetic_source``: train 36, val 12, test 16 images, 4 classes."""
    from cars.data import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "synthetic-target"
    prepare_dataset(synthetic_source, out, val_fraction=TINY_VAL_FRACTION, progress=False, seed=0)
    return out


@pytest.fixture(scope="session")
def prepared_source_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared set of 4 source classes, disjoint from ``prepared_set``'s, for pretraining."""
    from cars.data import SyntheticCars, prepare_synthetic

    out = tmp_path_factory.mktemp("prepared") / "synthetic-source"
    source = SyntheticCars(**TINY_SET, task="source")
    prepare_synthetic(out, source, val_fraction=TINY_VAL_FRACTION, progress=False)
    return out


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[str]:
    """An empty bucket on moto's S3 server on 127.0.0.1, as ``s3://<bucket>``.

    Clients find it the standard AWS way: the ``AWS_*`` variables below are set
    for the module, so pyarrow here, the jobs run as subprocesses and the Ray
    they start all reach the same server.
    """
    from moto.server import ThreadedMotoServer

    # The server logs every request at INFO, thousands per sweep.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with s3_environment(f"http://{host}:{port}", S3_BUCKET) as uri:
            yield uri
    finally:
        server.stop()
