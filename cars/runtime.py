"""Starting or joining Ray the way every job does."""

from __future__ import annotations

import logging
import os

import ray

# Ray's own INFO lines (dashboard URL, token set-up) drown the study's progress.
_RAY_LOGGING_LEVEL = logging.WARNING


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
    ray.init(num_cpus=num_cpus, logging_level=_RAY_LOGGING_LEVEL)
