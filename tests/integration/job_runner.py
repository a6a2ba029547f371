"""Running the jobs as a user runs them: a separate Python process per job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
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


# Ports a Ray head takes by default whatever it is told: the client server,
# the dashboard agent's HTTP server and the workers' range.
RAY_DEFAULT_PORTS = {10001, 52365, *range(10002, 20000)}


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1, none of them one Ray takes by default.

    The sockets stay bound until all ports are picked, so the OS cannot hand
    out the same port twice.
    """
    ports: list[int] = []
    with ExitStack() as stack:
        while len(ports) < count:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in RAY_DEFAULT_PORTS:
                ports.append(port)
    return ports


def start_ray_head() -> str:
    """A head started with ``ray start --head`` from the project root; its dashboard address.

    Jobs run with :func:`job_env` join it with a plain ``ray.init()``.
    """
    gcs, dashboard = free_ports(2)
    started = subprocess.run(
        [
            "ray", "start", "--head", "--num-cpus=2", f"--port={gcs}",
            "--include-dashboard=true", f"--dashboard-port={dashboard}",
            "--disable-usage-stats",
        ],
        cwd=PROJECT_ROOT, env=job_env(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    return f"http://127.0.0.1:{dashboard}"


def stop_ray() -> None:
    """Stop every Ray process that ``ray start`` started on this machine."""
    subprocess.run(
        ["ray", "stop", "--force"], env=job_env(), capture_output=True, timeout=120, check=False
    )
