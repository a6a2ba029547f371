"""The device a process trains on, from what Ray assigned it."""

from __future__ import annotations

import pytest
import torch

from cars.cluster.devices import device_for


def test_a_cpu_process_trains_on_the_cpu_whatever_gpus_exist() -> None:
    assert device_for(False, (), None) == torch.device("cpu")
    assert device_for(False, ("0",), "0,1") == torch.device("cpu")


def test_a_gpu_process_trains_on_the_gpu_ray_assigned_it() -> None:
    # Ray sets CUDA_VISIBLE_DEVICES to the process's GPUs: CUDA numbers them from 0.
    assert device_for(True, ("3",), "3") == torch.device("cuda", 0)
    # All the node's GPUs visible: the assigned one by its place in the list.
    assert device_for(True, ("2",), "0,1,2,3") == torch.device("cuda", 2)
    assert device_for(True, ("1", "0"), "1,0") == torch.device("cuda", 1)
    # Ray left CUDA_VISIBLE_DEVICES alone: CUDA numbers the GPUs by their ids.
    assert device_for(True, ("1",), None) == torch.device("cuda", 1)


def test_a_gpu_process_without_an_assigned_gpu_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="assigned it none"):
        device_for(True, (), None)
    with pytest.raises(RuntimeError, match="hides"):
        device_for(True, ("2",), "0,1")
