"""A real local Ray cluster for the integration tests, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray

from cars.cluster.runtime import init_ray

# Fail fast instead of waiting the default minute for a worker group that cannot start.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "45")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A 2-CPU local Ray, as on the CI machine, shut down after the module.

    Never alive while a test runs a job in its own process: with two local Ray
    instances, Ray's state API refuses to pick one, and Train's placement-group
    cleaner can no longer release finished worker groups.
    """
    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    yield
    ray.shutdown()
