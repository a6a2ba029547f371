"""Test-only: the project's jobs on GPUs declared to Ray, each process's device pick recorded.

Nodes of a ``ray.cluster_utils.Cluster`` declare GPUs this machine does not have;
Ray assigns their ids and sets ``CUDA_VISIBLE_DEVICES`` as on a GPU cluster. The
hook :func:`placement_hook` returns runs in every worker process of the test's job
(Ray's ``worker_process_setup_hook``) and changes only what a machine without
GPUs cannot do:

- the device pick (:func:`cars.cluster.devices.choose_device`) runs as it is; its
  choice is written to a record, then the process computes on the CPU. While the
  test holds (a ``hold`` file exists) the pick waits, so that the test can read
  Ray's state with every process in place;
- a Ray Train worker group's collectives use gloo instead of NCCL, which needs a
  GPU to start; its workers record their pick and report one epoch without
  training (moving a model to a CUDA device needs one too). A one-worker trial
  trains for real, on the CPU.

The sweeps, trainables, reservations and placement are the project's own.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import ray.cloudpickle

HOLD_FILE = "hold"
RECORDS_DIR = "records"
# How long a held process waits for the test to let it go before it fails.
HOLD_LIMIT_S = 600


def placement_hook(folder: str) -> Callable[[], None]:
    """The ``worker_process_setup_hook`` that records picks under ``folder`` (see the module)."""

    def install() -> None:
        after_import("torch.distributed", _gloo_instead_of_nccl)
        after_import("cars.cluster.devices", functools.partial(_record_picks, folder))
        after_import("cars.cluster.worker", _report_without_training_in_worker_groups)

    return install


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after the module named ``name`` is first executed."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name, self.patch = name, patch

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        execute, patch = spec.loader.exec_module, self.patch

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def after_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Patch module ``name`` now if it is loaded, else as soon as it is: a process that
    never imports it pays nothing."""
    if name in sys.modules:
        patch(sys.modules[name])
    else:
        sys.meta_path.insert(0, _PatchAfterImport(name, patch))


def _gloo_instead_of_nccl(dist: ModuleType) -> None:
    init_process_group = dist.init_process_group

    def on_gloo(backend: str | None = None, *args: Any, **kwargs: Any) -> Any:
        return init_process_group("gloo" if "nccl" in str(backend) else backend, *args, **kwargs)

    dist.init_process_group = on_gloo


def _record_picks(folder: str, devices: ModuleType) -> None:
    choose_device = devices.choose_device

    def recorded(use_gpu: bool, *, in_train_worker: bool = False) -> Any:
        choice = choose_device(use_gpu, in_train_worker=in_train_worker)
        record = {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "use_gpu": use_gpu,
            "in_train_worker": in_train_worker,
            "gpu_ids": list(choice.gpu_ids),
            "visible_before": choice.visible_devices,
            "visible_after": os.environ.get(devices.VISIBLE_DEVICES_ENV),
            "device": str(choice.device),
            **_place(in_train_worker),
        }
        _write_record(Path(folder), record)
        _wait_while_held(Path(folder))
        return replace(choice, device=devices.torch.device("cpu"))

    devices.choose_device = recorded


def _place(in_train_worker: bool) -> dict[str, Any]:
    """Which run the process belongs to, and its rank in it."""
    if in_train_worker:
        import ray.train

        context = ray.train.get_context()
        return {
            "run": context.get_experiment_name(),
            "rank": context.get_world_rank(),
            "local_rank": context.get_local_rank(),
        }
    try:
        import ray.tune

        run = ray.tune.get_context().get_trial_id()
    except Exception:  # not a trial: a task or an actor
        run = None
    return {"run": run or ray.get_runtime_context().get_actor_id(), "rank": 0, "local_rank": 0}


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    records = folder / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    staged = records / f".{os.getpid()}-{time.time_ns()}.json"
    staged.write_text(json.dumps(record))
    staged.rename(records / staged.name[1:])


def _wait_while_held(folder: Path) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while (folder / HOLD_FILE).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never let this process go ({folder / HOLD_FILE})")
        time.sleep(0.2)


def _report_without_training_in_worker_groups(worker: ModuleType) -> None:
    run_worker = worker.run_worker

    def run(loop_config: dict[str, Any], session: Any) -> None:
        from cars.cluster.session import RayTrainSession

        if not isinstance(session, RayTrainSession):
            run_worker(loop_config, session)
            return
        from cars.config import METRIC, selection_scores

        epoch = {"epoch": 1, METRIC: 0.0}
        session.report({**epoch, **selection_scores([epoch])}, None, 1)

    worker.run_worker = run


def read_records(folder: Path) -> list[dict[str, Any]]:
    """Every pick recorded under ``folder``, oldest first."""
    files = sorted((folder / RECORDS_DIR).glob("[!.]*.json"), key=lambda f: f.stat().st_mtime)
    return [json.loads(f.read_text()) for f in files]


def clear(folder: Path, *, hold: bool) -> None:
    """Forget earlier records; with ``hold``, make the next picks wait for :func:`release`."""
    for record in (folder / RECORDS_DIR).glob("*.json"):
        record.unlink()
    (folder / HOLD_FILE).touch() if hold else release(folder)


def release(folder: Path) -> None:
    """Let every held process go on."""
    (folder / HOLD_FILE).unlink(missing_ok=True)


# The workers cannot import this module (the tests folder is not a package on
# their path), so the hook travels to them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
