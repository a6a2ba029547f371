"""What a sweep job was given is checked before Ray starts: a mistake is named in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from cars.cli import USER_ERRORS, parse_sweep_args
from cars.study import run_study


@pytest.fixture
def no_ray() -> Iterator[None]:
    """No Ray before the test; any Ray the test started is shut down after it."""
    assert not ray.is_initialized()
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/nowhere"], "does not exist"),
        (["--resume", "--name", "nothing", "--storage", "{tmp}/runs"], "no sweep named"),
        (["--resume", "--storage", "{tmp}/runs"], "no sweep to resume"),
        (["--data", "{tmp}/set", "--weights", "{tmp}/no-weights"], "no-weights"),
        (["--name", "taken", "--storage", "{tmp}/runs"], "already exists"),
    ],
    ids=["no-data", "no-such-sweep", "no-sweep-at-all", "no-weights", "name-taken"],
)
def test_a_sweep_jobs_mistake_is_named_before_ray_starts(
    args: list[str], message: str, tmp_path: Path, prepared_set: Path, no_ray: None
) -> None:
    (tmp_path / "set").symlink_to(prepared_set)
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    job = parse_sweep_args([arg.format(tmp=tmp_path) for arg in args])
    with pytest.raises(USER_ERRORS) as raised:
        run_study(job)
    assert message in str(raised.value)
    assert not ray.is_initialized(), "Ray was started before the mistake was found"
