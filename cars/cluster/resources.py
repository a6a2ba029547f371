"""What each sweep trial reserves, and how many trials can run at once without deadlock.

A trial is a Tune driver plus a Ray Train worker group that the driver's
``TorchTrainer`` requests outside Tune's view. Tune only knows about the
driver, so if it started more drivers than the cluster has room for worker
groups, the extra groups would wait until Train's start-up time-out and fail.
``max_concurrent_trials`` therefore follows from the worker groups' needs.

A one-worker trial trains in its own process instead (``local_mode``, see
:mod:`cars.cluster.trial`): no controller, placement group or worker process to
start and stop. Tune then reserves the worker's CPUs and GPU for the trial
itself, and Ray's ``CUDA_VISIBLE_DEVICES`` for that process names its GPU
(:func:`cars.cluster.devices.choose_device`). This module is where that choice
is made, once, for the sweep and its confirmation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The driver only waits on ``TorchTrainer.fit``. It reserves a little memory
# instead of CPU so that workers can take whole CPUs: a fractional CPU for the
# driver would leave every integer worker reservation one CPU short.
DRIVER_RESOURCES: dict[str, float] = {"CPU": 0, "memory": 256 * 1024**2}


def trains_in_process(num_workers: int) -> bool:
    """Whether a run of ``num_workers`` trains in its own process rather than a worker group.

    The one place that chooses: a one-worker run gains nothing from a worker group
    (no data parallelism) and pays its start and stop, a Train controller and a
    placement group, on every trial.
    """
    return num_workers == 1


class ResourceError(ValueError):
    """The cluster can never hold one trial as configured."""


@dataclass(frozen=True)
class TrialResources:
    """One trial's reservation and how many trials run at once.

    ``local_mode``: the trial trains in its own process (one worker) instead of
    driving a Ray Train worker group (:mod:`cars.cluster.trial`).
    """

    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    max_concurrent_trials: int
    local_mode: bool = False

    def __post_init__(self) -> None:
        if self.local_mode and self.num_workers != 1:
            raise ResourceError(
                f"a trial trains in its own process with one worker, not {self.num_workers}"
            )

    def trial_reservation(self) -> dict[str, float]:
        """What Tune reserves for each trial's own process."""
        if not self.local_mode:
            return dict(DRIVER_RESOURCES)
        reservation = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            reservation["GPU"] = 1
        return reservation


def _largest_valid_cpus(available: float) -> float:
    """Ray takes fractions below one CPU, and whole numbers above."""
    if available >= 1:
        return float(math.floor(available))
    return math.floor(available * 100) / 100


def plan_trial_resources(
    cluster: Mapping[str, float],
    *,
    num_workers: int,
    cpus_per_worker: float,
    use_gpu: bool,
    max_concurrent_trials: int | None = None,
) -> TrialResources:
    """Fit one trial's worker group to the cluster and derive the trial concurrency.

    Args:
        cluster: the cluster's total resources, as ``ray.cluster_resources()``.
        max_concurrent_trials: an explicit limit, e.g. for an autoscaling cluster
            whose GPU nodes do not exist yet.

    Raises:
        ResourceError: a CPU-only cluster too small for even a fraction of a CPU
            per worker.
    """
    total_cpus = float(cluster.get("CPU", 0))
    total_gpus = float(cluster.get("GPU", 0))
    if use_gpu:
        if total_gpus < num_workers:
            logger.warning(
                "The cluster has %g GPUs now and a trial needs %d; trials wait for the "
                "autoscaler to add GPU nodes. Pass --max-concurrent-trials to run "
                "several at once on an autoscaling cluster.",
                total_gpus,
                num_workers,
            )
        by_gpu = math.floor(total_gpus / num_workers)
        by_cpu = math.floor(total_cpus / (num_workers * cpus_per_worker))
        concurrency = max(1, min(by_gpu, by_cpu))
    else:
        fitted = _largest_valid_cpus(min(cpus_per_worker, total_cpus / num_workers))
        if fitted <= 0:
            raise ResourceError(
                f"{num_workers} workers cannot share {total_cpus:g} CPUs; lower --num-workers"
            )
        if fitted != cpus_per_worker:
            logger.info(
                "%d workers x %g CPUs do not fit %g CPUs; each worker reserves %g CPUs",
                num_workers,
                cpus_per_worker,
                total_cpus,
                fitted,
            )
        cpus_per_worker = fitted
        concurrency = max(1, math.floor(total_cpus / (num_workers * cpus_per_worker) + 1e-9))
    if max_concurrent_trials is not None:
        if max_concurrent_trials < 1:
            raise ResourceError(f"max_concurrent_trials={max_concurrent_trials} must be at least 1")
        concurrency = max_concurrent_trials
    return TrialResources(
        num_workers=num_workers,
        cpus_per_worker=cpus_per_worker,
        use_gpu=use_gpu,
        max_concurrent_trials=concurrency,
        local_mode=trains_in_process(num_workers),
    )
