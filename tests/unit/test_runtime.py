"""What a job finds of other Ray instances on its machine, from their raylets' command lines."""

from __future__ import annotations

from pathlib import Path

from cars.cluster.runtime import find_gone_cluster, find_local_gcs_addresses

RAYLET = "/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet"


def _process(proc: Path, pid: int, *arguments: str) -> None:
    folder = proc / str(pid)
    folder.mkdir(parents=True)
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in arguments) + b"\0")


def test_every_raylets_gcs_address_is_found(tmp_path: Path) -> None:
    _process(tmp_path, 10, RAYLET, "--node_ip_address=10.0.0.1", "--gcs-address=10.0.0.1:6379")
    _process(tmp_path, 11, RAYLET, "--gcs-address=127.0.0.1:40123", "--num_cpus=2")
    # A worker's command line names the GCS too, and is not an instance of its own.
    _process(tmp_path, 12, "ray::RayTrainWorker", "--gcs-address=10.0.0.1:6379")
    _process(tmp_path, 13, "/usr/bin/python", "jobs/sweep.py", "--gcs-address=1.2.3.4:5")
    (tmp_path / "self").mkdir()  # not a process id
    assert find_local_gcs_addresses(tmp_path) == {"10.0.0.1:6379", "127.0.0.1:40123"}


def test_no_raylet_no_instance(tmp_path: Path) -> None:
    _process(tmp_path, 10, "/usr/bin/python", "-c", "pass")
    assert find_local_gcs_addresses(tmp_path) == set()
    assert find_local_gcs_addresses(tmp_path / "missing") == set()


def test_a_recorded_cluster_without_a_raylet_here_is_gone(tmp_path: Path) -> None:
    proc, recorded = tmp_path / "proc", tmp_path / "ray_current_cluster"
    _process(proc, 10, RAYLET, "--gcs-address=127.0.0.1:40123")
    recorded.write_text("192.0.2.2:42649\n")
    assert find_gone_cluster(recorded, proc) == "192.0.2.2:42649"
    # A cluster whose raylet runs here (a head, or a worker node naming its head) is joined.
    recorded.write_text("127.0.0.1:40123\n")
    assert find_gone_cluster(recorded, proc) is None
    # Nothing recorded, or no /proc to read: nothing is taken for gone.
    assert find_gone_cluster(tmp_path / "none", proc) is None
    recorded.write_text("192.0.2.2:42649\n")
    assert find_gone_cluster(recorded, tmp_path / "no-proc") is None
