"""Whether a job starts its own Ray or joins a cluster, and what that changes."""

from __future__ import annotations

import pytest

from cars.cluster.runtime import starts_local_instance


def test_a_job_under_ray_address_joins_that_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not starts_local_instance()


def test_a_job_with_a_local_address_starts_its_own_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert starts_local_instance()
