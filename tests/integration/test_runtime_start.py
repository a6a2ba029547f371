"""A job that finds the cluster `ray start` recorded here gone starts its own Ray at once,
and that Ray runs the job's tasks at the job's own priority."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cars.cluster.runtime import WORKER_NICENESS_ENV


def test_a_job_starts_its_own_ray_where_the_recorded_cluster_is_gone() -> None:
    # A cluster `ray start` recorded in Ray's temp folder, long gone: the job does not
    # spend minutes trying to reach it. (A short folder: Ray's socket paths must fit.)
    tmp_path = Path(tempfile.mkdtemp(prefix="gone-", dir="/tmp"))
    recorded = tmp_path / "ray" / "ray_current_cluster"
    recorded.parent.mkdir()
    recorded.write_text("192.0.2.2:42649\n")
    code = (
        "import os, ray\n"
        "from cars.cluster.runtime import init_ray\n"
        "init_ray(num_cpus=1)\n"
        "print('joined', ray.get_runtime_context().gcs_address)\n"
        "print('niceness', os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
        "ray.shutdown()\n"
    )
    # A user's shell: no cluster named, Ray's own worker niceness.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", WORKER_NICENESS_ENV)}
    env |= {"RAY_TMPDIR": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["nice", "-n", "3", sys.executable, "-c", code],  # a job started nicer than usual
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "joined" in done.stdout and "192.0.2.2:42649" not in done.stdout
    assert "(192.0.2.2:42649) no longer runs: starting a local one instead" in done.stderr
    # The job's task runs as nice as the job, not Ray's 15 steps nicer (18 here), which on
    # a machine busy with other work leaves a trial a thirtieth of their CPU time.
    niceness = os.nice(0) + 3
    assert f"niceness {niceness} {niceness}" in done.stdout, done.stdout
    shutil.rmtree(tmp_path, ignore_errors=True)
