"""A job given bad input, run as a user runs it: a clear message and exit status 2.

Each job is a separate Python process that stops before it starts a Ray, so these run
beside the Ray tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from job_runner import job_command, job_env

pytestmark = pytest.mark.slow

BAD_INPUTS = [
    ("sweep", ["--preset", "full"], "pass --data"),
    ("sweep", ["--data", "nowhere"], "does not exist"),
    ("sweep", ["--resume", "--name", "nothing", "--storage", "runs-x"], "no sweep named"),
    ("report", ["--sweep", "nowhere"], "not a sweep of this project"),
    ("train", ["--data", "nowhere"], "does not exist"),
    ("train", ["--data", "x", "--regime", "scratch", "--weights", "imagenet"], "weights="),
]


@pytest.fixture(scope="module")
def bad_input_jobs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[int, tuple[Path, subprocess.Popen]]]:
    """Every bad-input job started at once, as its own process: each spends most of its
    seconds importing, which two cores do side by side. Case -> (its folder, its process)."""
    jobs = {}
    for case, (job, args, _) in enumerate(BAD_INPUTS):
        cwd = tmp_path_factory.mktemp(f"bad-input-{case}")
        with (cwd / "stdout").open("w") as out, (cwd / "stderr").open("w") as err:
            jobs[case] = (
                cwd,
                subprocess.Popen(
                    job_command(job, args), cwd=cwd, env=job_env(), stdout=out, stderr=err
                ),
            )
    yield jobs
    for _, process in jobs.values():
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    "case", range(len(BAD_INPUTS)), ids=[f"{job}-{message}" for job, _, message in BAD_INPUTS]
)
def test_bad_input_exits_2_with_a_clear_message(
    case: int, bad_input_jobs: dict[int, tuple[Path, subprocess.Popen]]
) -> None:
    cwd, process = bad_input_jobs[case]
    # Beside the Ray tests the jobs run nicer (see tests/conftest.py): on a machine busy
    # with other work too, six of them took 166 s.
    returncode = process.wait(timeout=600)
    stdout, stderr = (cwd / "stdout").read_text(), (cwd / "stderr").read_text()
    assert returncode == 2, stdout + stderr
    assert BAD_INPUTS[case][2] in stderr
    assert "Traceback" not in stderr
