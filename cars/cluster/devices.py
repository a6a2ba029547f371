"""The device a Ray process computes on: the GPU Ray assigned it, or the CPU.

One function, :func:`choose_device`, picks it for every process that trains or
predicts: a Ray Train worker, a one-worker trial's own process, the task that
computes a sweep's shared features, a prediction actor and a scoring task.
Each of them reserves its GPU from Ray, and Ray, not CUDA's numbering, says
which one it got: Ray assigns GPU ids on the node and sets
``CUDA_VISIBLE_DEVICES``, and a process that took "the first GPU CUDA shows"
would share one GPU with every process Ray left all of them visible to.

The choice is computed from Ray's assignment alone, without CUDA, so it is the
same on a node whose GPUs are only declared to Ray (``ray start --num-gpus N``);
the tests check placement that way. Only ``torch`` and ``ray`` are imported, so a
prediction actor does not load Ray Train or Tune to pick its device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray
import torch

VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class DeviceChoice:
    """The device a process computes on, and what Ray told it: its GPU ids and visible devices."""

    device: torch.device
    gpu_ids: tuple[str, ...]
    visible_devices: str | None


def device_for(
    use_gpu: bool, gpu_ids: tuple[str, ...], visible_devices: str | None
) -> torch.device:
    """The device of a process that reserved ``use_gpu``, given the GPUs Ray assigned it.

    Ray names a process's GPUs by their ids on the node and sets
    ``CUDA_VISIBLE_DEVICES`` to them, so CUDA numbers them from 0 in that list; a
    process whose ``CUDA_VISIBLE_DEVICES`` Ray left alone sees every GPU by its id.
    """
    if not use_gpu:
        return torch.device("cpu")
    if not gpu_ids:
        raise RuntimeError(
            "this process reserved a GPU but Ray assigned it none: start Ray with the "
            "node's GPUs (ray start --num-gpus N), or train on the CPU (--cpu)"
        )
    first = min(gpu_ids, key=lambda i: int(i) if i.isdigit() else i)
    if visible_devices:
        ids = [i.strip() for i in visible_devices.split(",")]
        if first not in ids:
            raise RuntimeError(
                f"Ray assigned GPU {first}, which CUDA_VISIBLE_DEVICES={visible_devices} hides"
            )
        return torch.device("cuda", ids.index(first))
    return torch.device("cuda", int(first))


def choose_device(use_gpu: bool, *, in_train_worker: bool = False) -> DeviceChoice:
    """The device this process computes on: the GPU Ray assigned it, or the CPU.

    In a Ray Train worker, ``ray.train.torch.get_device()`` (which also knows the
    worker's local rank among the workers that share the node's GPUs); in any
    other process (a trial's own, a task, an actor), the GPU ids Ray assigned it.
    A CPU process is made to see no GPU: a process that reserved none may be
    left every GPU visible, and CUDA would pick the first, another process's.

    Args:
        use_gpu: whether the process reserved a GPU.
        in_train_worker: the process is a worker of a Ray Train worker group.
    """
    visible = os.environ.get(VISIBLE_DEVICES_ENV)
    if not ray.is_initialized():
        # Outside Ray (a Ray-free check of the training loop) nothing was assigned.
        device = torch.device("cuda" if use_gpu else "cpu")
        return DeviceChoice(device, (), visible)
    gpu_ids = tuple(str(i) for i in ray.get_gpu_ids())
    if in_train_worker:
        from ray.train.torch import get_device

        device = get_device()
    else:
        device = device_for(use_gpu, gpu_ids, visible)
    if not use_gpu:
        os.environ[VISIBLE_DEVICES_ENV] = ""
    return DeviceChoice(device, gpu_ids, visible)
