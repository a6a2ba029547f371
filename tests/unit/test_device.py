"""A process set up for its device, and loaders fed from the CPUs it holds."""

from __future__ import annotations

import pytest
import torch
from devices import NEEDS_CUDA

from cars.config import TrainConfig
from cars.learn import device as device_module
from cars.learn.device import (
    STARTING_THREADS,
    configure_device,
    loader_options,
    loader_workers_for,
    resolve_loader_workers,
    starting_threads,
)
from cars.learn.gradcam import compute_cams
from cars.learn.model import build_model


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "available_cpus", lambda: 8)


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("cpus", "on_gpu", "workers"),
    [
        (8.0, True, 7),  # one CPU trains, the others decode
        (4.5, True, 3),  # whole CPUs only
        (1.0, True, 1),  # a GPU is never fed from the training process
        (16.0, True, 7),  # no more than the CPUs this process may run on
        (8.0, False, 0),  # a CPU run needs its cores for training
    ],
)
def test_loader_workers_come_from_the_cpus_held(cpus: float, on_gpu: bool, workers: int) -> None:
    assert loader_workers_for(cpus, on_gpu) == workers


@pytest.mark.usefixtures("eight_cpus")
def test_a_run_s_own_loader_workers_win() -> None:
    config = TrainConfig(data="d", use_gpu=True, cpus_per_worker=6.0)
    assert resolve_loader_workers(config) == 5
    assert resolve_loader_workers(config.replace(loader_workers=2)) == 2
    assert resolve_loader_workers(config.replace(use_gpu=False)) == 0


def test_loaders_pin_memory_for_a_gpu_and_keep_their_workers() -> None:
    gpu, cpu = loader_options(3, True), loader_options(0, False)
    assert gpu == {"num_workers": 3, "pin_memory": True, "persistent_workers": True}
    assert cpu == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}


def test_a_cpu_process_runs_as_many_threads_as_cpus_it_holds() -> None:
    threads = torch.get_num_threads()
    try:
        assert configure_device("cpu", 1.5) == torch.device("cpu")
        assert torch.get_num_threads() == 1
        configure_device("cpu")  # no reservation: the threads stay
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NEEDS_CUDA)])
def test_a_gpu_process_lets_cudnn_pick_its_kernels(device: str) -> None:
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        assert configure_device(device).type == "cuda"
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.skipif(STARTING_THREADS < 2, reason="needs a process that starts on 2+ threads")
def test_work_on_the_starting_threads_gives_the_same_bits_whatever_ran_before() -> None:
    # A trial that held one CPU leaves this process on one thread; the same CAMs
    # on one and on two threads differ in their last bits.
    torch.manual_seed(0)
    model = build_model("scratch", num_classes=4)
    pixels = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    cams = []
    before = torch.get_num_threads()
    try:
        for threads in (1, STARTING_THREADS):
            torch.set_num_threads(threads)
            with starting_threads():
                assert torch.get_num_threads() == STARTING_THREADS
                cams.append(compute_cams(model, pixels).cams)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert cams[0].tobytes() == cams[1].tobytes()
