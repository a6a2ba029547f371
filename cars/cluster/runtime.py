"""Starting or joining Ray the way every job does."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)

# Ray's own INFO lines (dashboard URL, token set-up) drown the study's progress.
_RAY_LOGGING_LEVEL = logging.WARNING

PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in ``RAY_ADDRESS`` (as under ``ray job submit``) or start a local one.

    ``ray.init()`` with no arguments also joins a cluster started with
    ``ray start`` on this machine. ``num_cpus`` is only for starting a local
    cluster (the tests pin it); Ray refuses it when joining.
    """
    if ray.is_initialized():
        return
    # Ray Train copies workers' prints into its own log *and* the console, so
    # every epoch line would show twice; plain stdout is forwarded once.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if starts_local_instance():
        # Ray Train's preemption watcher (one more actor per run, polling every
        # node) catches spot nodes being reclaimed; a Ray instance of this job
        # alone, on this machine, has none. Its processes inherit this setting.
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    ray.init(num_cpus=num_cpus, logging_level=_RAY_LOGGING_LEVEL)
    _warn_about_other_local_instances()


def starts_local_instance() -> bool:
    """Whether ``ray.init()`` starts a new local Ray, rather than joining a cluster.

    Ray joins ``RAY_ADDRESS`` or the cluster of the last ``ray start`` on this
    machine, and starts its own instance only when there is neither.
    """
    try:
        return ray._private.services.canonicalize_bootstrap_address(None) is None
    except Exception:  # a private API: when unsure, assume a cluster and change nothing
        return False


def _warn_about_other_local_instances() -> None:
    """Several local Ray instances break the state API that Train's cleanup relies on."""
    try:
        others = set(ray._private.services.find_gcs_addresses())
    except Exception:  # a private API: never let the check itself fail a job
        return
    others.discard(ray.get_runtime_context().gcs_address)
    if others:
        logger.warning(
            "Other Ray instances run on this machine (%s). Ray's state API then cannot tell "
            "them apart, Ray Train cannot release finished worker groups, and later trials "
            "wait for CPUs forever. Stop them (`ray stop`, or end those Python sessions), "
            "or join one of them with RAY_ADDRESS.",
            ", ".join(sorted(others)),
        )
