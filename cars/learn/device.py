"""What a process sets up before it trains or predicts on a device, and how its loaders feed it.

On CUDA, cuDNN's benchmark mode times the candidate convolution kernels once per
input shape and keeps the fastest: every batch of a run has the same shape, so
it pays from the second step on. (Deterministic kernels are not asked for: Ray's
``enable_reproducibility`` would turn benchmark mode off.) On a CPU, the
process's torch threads are the CPUs it holds.

The loader's worker processes come from the same CPUs: on a GPU every CPU but
one decodes and augments (the training process needs one core to launch
kernels); on a CPU the training itself needs the cores, and decoding stays in
the training process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from cars.config import TrainConfig


def configure_device(device: torch.device | str, cpus: float | None = None) -> torch.device:
    """Set this process up for work on ``device``; returns it as a ``torch.device``.

    Args:
        cpus: the CPUs this process holds (its Ray reservation); on a CPU device,
            torch's intra-op threads. ``None`` leaves the threads as they are.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif cpus is not None:
        torch.set_num_threads(max(1, int(cpus)))
    return device


STARTING_THREADS = torch.get_num_threads()
"""Torch's intra-op threads in this process before anything here set them."""


@contextmanager
def starting_threads() -> Iterator[None]:
    """Compute the body on the threads this process started with, then restore the count.

    A float sum split over threads rounds by how it was split: the same CAMs on one
    and on two threads differ in their last bits. Whatever ran earlier in the
    process (a trial that set its own threads), a body run here computes as a
    fresh process does, so that the same inputs give the same bytes.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(STARTING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_workers_for(cpus: float, on_gpu: bool) -> int:
    """DataLoader worker processes for a process that holds ``cpus`` CPUs.

    On a GPU: every held CPU but the one the training process runs on, at
    least one (decoding in the training process would stall the GPU at every
    batch), and no more than the CPUs this process may run on. On a CPU: none.
    """
    if not on_gpu:
        return 0
    held = max(1, int(cpus))
    return max(1, min(held, available_cpus()) - 1)


def resolve_loader_workers(config: TrainConfig) -> int:
    """A run's DataLoader worker processes per training worker: its own, or from its CPUs.

    The CPUs are those each training worker reserves (``cpus_per_worker``): a
    worker group's worker or a one-worker trial's own process.
    """
    if config.loader_workers is not None:
        return config.loader_workers
    return loader_workers_for(config.cpus_per_worker, config.use_gpu)


def loader_options(workers: int, on_gpu: bool) -> dict[str, Any]:
    """The ``DataLoader`` options that feed a device from ``workers`` processes.

    Pinned batches on a GPU, so that the engine's ``non_blocking`` copies overlap
    with the previous step; persistent workers, so that each epoch does not start
    them again (and re-import torch and timm in each).
    """
    return {
        "num_workers": workers,
        "pin_memory": on_gpu,
        "persistent_workers": workers > 0,
    }
