"""The device a process computes on, from what Ray assigned it."""

from __future__ import annotations

import os

import pytest
import ray
import torch

from cars.cluster.devices import VISIBLE_DEVICES_ENV, DeviceChoice, choose_device, device_for


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


def test_outside_ray_a_process_takes_the_device_it_asks_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ray-free check of the loop: nothing was assigned, and the environment stays as it is."""
    monkeypatch.setenv(VISIBLE_DEVICES_ENV, "1,2")
    assert not ray.is_initialized()
    assert choose_device(True) == DeviceChoice(torch.device("cuda"), (), "1,2")
    assert choose_device(False) == DeviceChoice(torch.device("cpu"), (), "1,2")
    assert os.environ[VISIBLE_DEVICES_ENV] == "1,2"
