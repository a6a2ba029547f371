"""Shared fixtures; tests are marked ``unit`` or ``integration`` by the folder they live in."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import s3_environment

TESTS_DIR = Path(__file__).resolve().parent

# The tiny synthetic sets of the fixtures: 4 classes of 12 training and 4 test
# images each; a quarter of training is held out, so every split has every class
# (train 36 = 9 per class, val 12 = 3 per class, test 16 = 4 per class).
TINY_SET = {"num_classes": 4, "train_per_class": 12, "test_per_class": 4, "seed": 0}
TINY_VAL_FRACTION = 0.25
S3_BUCKET = "cars-test"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR).parts[0]
        if kind in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, kind))
    # The tests on the shared Ray first, together, so that it starts once (see
    # tests/integration/conftest.py); the order within each group is kept.
    items.sort(key=lambda item: "ray_cluster" not in getattr(item, "fixturenames", ()))


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
