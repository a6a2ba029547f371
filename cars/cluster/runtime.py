"""Starting or joining Ray the way every job does."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

logger = logging.getLogger(__name__)

# Ray's own INFO lines (dashboard URL, token set-up) drown the study's progress.
_RAY_LOGGING_LEVEL = logging.WARNING

PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
# How much nicer than their raylet Ray runs its worker processes (Ray's default: 15).
WORKER_NICENESS_ENV = "RAY_worker_niceness"
# The flag with which every raylet names its cluster's GCS on its command line.
_GCS_FLAG = "--gcs-address="


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in ``RAY_ADDRESS`` (as under ``ray job submit``) or start a local one.

    ``ray.init()`` with no arguments also joins a cluster started with
    ``ray start`` on this machine. Where that cluster is gone (stopped without
    ``ray stop``, killed), Ray would spend minutes trying to reach it before it
    fails; a local one is started instead, and a warning says why. ``num_cpus``
    is only for starting a local cluster (the tests pin it); Ray refuses it when
    joining.
    """
    if ray.is_initialized():
        return
    # Ray Train copies workers' prints into its own log *and* the console, so
    # every epoch line would show twice; plain stdout is forwarded once.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    # Ray Train's preemption watcher (one more actor per run, polling every node)
    # catches spot nodes being reclaimed; a Ray instance of this job alone, on this
    # machine, has none. Only an instance that ray.init starts here inherits this
    # process's environment: the processes of a cluster it joins keep their own.
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    address = None
    joining = os.environ.get("RAY_ADDRESS", "local") != "local"
    gone = None if joining else find_gone_cluster()
    if gone is not None:
        logger.warning(
            "The Ray cluster last started here with `ray start` (%s) no longer runs: starting "
            "a local one instead. `ray stop` forgets it; set RAY_ADDRESS to join another.",
            gone,
        )
        address = "local"
    starts_here = not joining and (gone is not None or recorded_cluster() is None)
    # A local instance's processes are told which cluster is theirs, so that Ray's state
    # API, which Train's cleanup of finished worker groups calls, never has to guess
    # among several instances on one machine (another job's, a notebook's).
    runtime_env = {"worker_process_setup_hook": OWN_CLUSTER_HOOK} if starts_here else None
    if starts_here:
        # Ray runs its workers 15 steps nicer than itself, made for nodes that run Ray
        # alone. On a machine shared with other work, a process of normal priority
        # then gets some thirty times a trial's CPU time, and the trials crawl until
        # their worker groups time out. The trials of a job that starts its own Ray
        # run at the job's own priority (`nice python jobs/sweep.py` still lowers it).
        os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    ray.init(
        address=address,
        num_cpus=num_cpus,
        logging_level=_RAY_LOGGING_LEVEL,
        runtime_env=runtime_env,
    )


OWN_CLUSTER_HOOK = "cars.cluster.runtime.name_own_cluster"


def name_own_cluster() -> None:
    """Set up a worker process of a local instance: ``RAY_ADDRESS`` names its own cluster.

    Without it, Ray's state API in that process looks for *the* local instance; with
    two on the machine (two jobs at once) it raises, and Ray Train's placement-group
    cleaner dies with it, so that finished worker groups keep their CPUs and the next
    trial's group waits for them until it times out.
    """
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def recorded_cluster(address_file: Path | None = None) -> str | None:
    """The address of the cluster ``ray start`` last recorded here, which ``ray.init()``
    joins while it runs; None if none is recorded."""
    try:
        return (address_file or ray_address_file()).read_text().strip() or None
    except OSError:
        return None


def ray_address_file() -> Path:
    """Where ``ray start`` records the cluster that ``ray.init()`` joins: Ray's temp folder."""
    system = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(system) / "ray" / "ray_current_cluster"


def find_gone_cluster(address_file: Path | None = None, proc: Path = Path("/proc")) -> str | None:
    """The address ``ray start`` recorded here if no raylet of that cluster runs here; else None.

    Every node of a running cluster has a raylet that names its GCS (see
    :func:`find_local_gcs_addresses`); where ``/proc`` cannot be read, nothing is
    taken for gone.
    """
    recorded = recorded_cluster(address_file)
    if not recorded or not proc.is_dir() or recorded in find_local_gcs_addresses(proc):
        return None
    return recorded


def find_local_gcs_addresses(proc: Path = Path("/proc")) -> set[str]:
    """The GCS address of every Ray instance whose raylet runs on this machine.

    Read from the raylets' command lines (Linux's ``/proc``), as ``ray start``
    finds running instances; elsewhere, or where a process cannot be read, none.
    """
    addresses = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended, or is not ours to read
            continue
        if not arguments or not arguments[0].endswith(b"raylet"):
            continue
        for argument in arguments:
            text = argument.decode(errors="replace")
            if text.startswith(_GCS_FLAG):
                addresses.add(text.removeprefix(_GCS_FLAG))
    return addresses
