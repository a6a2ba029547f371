"""Running the jobs as a user runs them: a separate Python process per job."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cars.paths import PROJECT_ROOT


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a job process, as in a user's shell: it starts its own Ray."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def job_command(job: str, args: Sequence[str]) -> list[str]:
    """``python jobs/<job>.py ARGS``."""
    return [sys.executable, str(PROJECT_ROOT / "jobs" / f"{job}.py"), *args]


def run_job(
    job: str, args: Sequence[str], *, cwd: Path, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a job to its end from ``cwd`` and return what it printed."""
    return subprocess.run(
        job_command(job, args),
        cwd=cwd,
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
