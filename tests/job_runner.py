"""Running the jobs as a user runs them: a separate Python process per job."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from cars.paths import PROJECT_ROOT


def scripts_dir() -> Path:
    """Where the running Python's console scripts are (``ray``): beside ``sys.executable``
    in a virtual environment, whether or not that environment is activated."""
    return Path(sysconfig.get_path("scripts"))


def ray_cli() -> str:
    """The ``ray`` command of the Python running the tests, not whichever is first on PATH."""
    ray = scripts_dir() / "ray"
    if not ray.is_file():
        raise FileNotFoundError(f"no `ray` command beside {sys.executable}: pip install -e .")
    return str(ray)


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a job process, as in a user's shell: it starts its own Ray.

    The running Python's scripts come first on PATH, as in an activated environment, so a
    ``python`` or ``ray`` that Ray itself runs (a submitted job's entrypoint) is this one.
    """
    path = os.pathsep.join([str(scripts_dir()), os.environ.get("PATH", os.defpath)])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path, **extra}
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


def run_job_here(job: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a job's ``main`` in this process, on the Ray it is connected to, and return what
    it printed and its exit status as :func:`run_job` does.

    For the tests whose claim is about the job's data, not its process: they save a
    Python start and a Ray start each. What the job prints through ``sys.stdout`` and
    ``sys.stderr`` is caught, Ray's copies of its workers' output included.
    """
    spec = importlib.util.spec_from_file_location(
        f"jobs_{job}", PROJECT_ROOT / "jobs" / f"{job}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(list(args))
        except SystemExit as exit_:
            # As Python exits: no code is success, a message is failure.
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess([job, *args], code, out.getvalue(), err.getvalue())


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


# Where the README says how a head is started on one machine.
README_HEAD_SECTION = "### Submitting to a local Ray cluster"
# Token authentication settings a test's own environment must not lend a head or a client.
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def readme_head_commands() -> list[tuple[dict[str, str], list[str]]]:
    """The README's commands that start a head, as (environment, argv): every line of the
    section's first shell block before the first ``ray job``."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index(README_HEAD_SECTION) :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, f"no shell block in the README's {README_HEAD_SECTION!r}"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[-2:] == [">", "/dev/null"]:
            words = words[:-2]
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if words[:2] == ["ray", "job"]:
            break
        assert words[0] == "ray", f"not a ray command: {line!r}"
        commands.append((env, [ray_cli(), *words[1:]]))
    return commands


def head_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of the README's user whose home is ``home``, for the head and its
    clients alike: token authentication comes from there or from the commands, never from
    the environment the tests run in."""
    env = job_env(HOME=str(home), **extra)
    for name in RAY_AUTH_VARIABLES:
        if name not in extra:
            env.pop(name, None)
    return env


def start_ray_head(home: Path) -> str:
    """A head started from the project root as the README says, by a user whose home is
    ``home``; its dashboard (jobs API) address.

    Jobs and the ``ray`` command join it with ``head_env(home, RAY_AUTH_MODE="token")``.
    """
    gcs, dashboard = free_ports(2)
    # A test's head: 2 CPUs, ports of its own, no usage reports.
    options = [
        "--num-cpus=2", f"--port={gcs}", "--include-dashboard=true",
        f"--dashboard-port={dashboard}", "--disable-usage-stats",
    ]  # fmt: skip
    for env, documented in readme_head_commands():
        is_start = documented[1:3] == ["start", "--head"]
        command = [*documented, *options] if is_start else documented
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=head_env(home, **env), capture_output=True,
            text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}{done.stderr}"
    return f"http://127.0.0.1:{dashboard}"


def stop_ray() -> None:
    """Stop every Ray process that ``ray start`` started on this machine."""
    subprocess.run(
        [ray_cli(), "stop", "--force"], env=job_env(), capture_output=True, timeout=120, check=False
    )
