"""One-worker runs train in their own process, persisted and resumed as a worker group's.

No Ray Train controller or worker group starts for them; their run folder is the one a
worker group writes, so a run a worker group started (or a sweep written before
one-worker trials trained in their own process) resumes and reads back unchanged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from job_runner import job_env
from ray.util.state import list_actors
from state import connected_cluster

from cars.cluster.resources import trains_in_process
from cars.cluster.sweep import plan_resources, run_sweep
from cars.cluster.train import create_trainer, run_training
from cars.config import TrainConfig
from cars.runs import read_run
from cars.sweep_config import create_sweep_config

pytestmark = pytest.mark.slow


def _config(data: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=str(data), regime="frozen", epochs=epochs, batch_size=8, image_size=32, augment="none"
    )


def _actors() -> dict[str, str]:
    """Every actor the cluster has had, alive or dead: its id and class."""
    actors = list_actors(address=connected_cluster(), limit=1000, raise_on_missing_output=False)
    return {a.actor_id: a.class_name for a in actors}


def _actor_classes(before: dict[str, str]) -> set[str]:
    """The classes of the actors created since ``before`` was listed."""
    return {name for key, name in _actors().items() if key not in before}


def test_a_one_worker_run_trains_in_its_own_process_and_resumes_its_last_checkpoint(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    assert trains_in_process(1) and not trains_in_process(2)
    before = _actors()  # the shared cluster's earlier tests started worker groups
    first = run_training(_config(prepared_set, 1), storage_path=str(tmp_path), name="local")
    assert [c.epoch for c in first.checkpoints] == [1]
    assert first.history[0]["world_size"] == 1
    # No worker group was started for it: no controller, no Train worker.
    assert not {"TrainController", "RayTrainWorker"} & _actor_classes(before)

    run = run_training(_config(prepared_set, 3), storage_path=str(tmp_path), name="local")
    # Epoch 1 was not trained again: its row is the first run's, to the timestamp.
    assert run.history[0] == first.history[0]
    assert [row["epoch"] for row in run.history] == [1, 2, 3]
    assert run.latest is not None and run.latest.location == str(tmp_path / "local" / "epoch-0003")
    # CheckpointConfig(num_to_keep=2) as with a worker group: the two best and the latest.
    assert 2 <= len(run.checkpoints) <= 3
    assert run.best is not None and run.best in run.checkpoints


def test_a_run_a_worker_group_started_resumes_in_its_own_process(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    """The layout of Ray Train's runs (and of sweeps written before this path) reads back."""
    config = _config(prepared_set, 2)
    create_trainer(config, storage_path=str(tmp_path), name="run").fit()
    by_ray = ray.train.Result.from_path(str(tmp_path / "run"))
    stored = read_run(str(tmp_path / "run"))
    assert [c.epoch for c in stored.checkpoints] == sorted(
        m["epoch"] for _, m in by_ray.best_checkpoints
    )
    assert stored.latest is not None and stored.latest.location == by_ray.checkpoint.path
    assert stored.history[-1]["epoch"] == by_ray.metrics["epoch"] == 2

    resumed = run_training(config.replace(epochs=3), storage_path=str(tmp_path), name="run")
    assert resumed.history[:2] == stored.history
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def _recorded_epoch(sweep_dir: Path) -> int:
    """The epoch of the sweep's one run's latest checkpoint; 0 before the first."""
    for run in sweep_dir.glob("train-*"):
        latest = read_run(str(run)).latest
        return 0 if latest is None else latest.epoch
    return 0


def _trial_pid() -> int:
    actors = list_actors(address=connected_cluster(), filters=[("state", "=", "ALIVE")])
    # Tune runs a function trainable in an actor of its ImplicitFunc class (a local class
    # of wrap_function, named so).
    pids = [a.pid for a in actors if a.class_name.endswith("ImplicitFunc")]
    assert len(pids) == 1, [a.class_name for a in actors]
    return pids[0]


def test_tune_restarts_a_killed_one_worker_trial_from_its_last_checkpoint(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    sweep = create_sweep_config(
        "smoke",
        "killed",
        data=str(prepared_set),
        storage=str(tmp_path),
        weights="none",
        regimes=("frozen",),
        augments=("none",),
        num_samples=1,
        num_workers=1,
        epochs=4,
        image_size=32,
        max_failures=1,
    )
    assert plan_resources(sweep).local_mode
    killed_at: list[float] = []
    failed: list[BaseException] = []

    def kill_after_first_checkpoint() -> None:
        try:
            deadline = time.monotonic() + 300
            while _recorded_epoch(tmp_path / "killed") < 1:
                if time.monotonic() > deadline:
                    raise TimeoutError("the trial never wrote its first checkpoint")
                time.sleep(0.1)
            os.kill(_trial_pid(), signal.SIGKILL)
            killed_at.append(time.time())
        except BaseException as error:  # raised again in the test's thread
            failed.append(error)

    before = _actors()  # an earlier test's worker group may still be listed
    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    outcome = run_sweep(sweep)
    killer.join()

    if failed:
        raise failed[0]
    assert outcome.results.num_errors == 0
    (run,) = (tmp_path / "killed").glob("train-*")
    history = read_run(str(run)).history
    # Every epoch once: the restarted trial went on from the last checkpoint.
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    assert history[0]["epoch_started_at"] < killed_at[0] < history[-1]["epoch_started_at"]
    # Tune heard of the epochs after the restart once each, from the restarted trial.
    frame = outcome.results[0].metrics_dataframe
    assert frame["epoch"].is_unique and frame["epoch"].iloc[-1] == 4
    # No worker group anywhere, and the killed trial's reservation was released with it.
    assert not {"TrainController", "RayTrainWorker"} & _actor_classes(before)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2)


# Four actors on one one-CPU Ray, one case after another: an actor that exits slowly, as
# a process that trained a run does (Ray's shutdown, the finalizers of torch and a model),
# and is sent SIGTERM meanwhile, as Ray ends its workers; and an actor whose task frees an
# object and is sent SIGTERM while the object's weakref callback runs (as freeing a
# model's tensors does, in the task's own thread), where Ray's handler raises SystemExit
# and Python can only print it. Each either ends quietly on SIGTERM or is as Ray leaves
# it. Each case waits on the state it needs, failing loudly, and once the actor's process
# is gone (so its log files are whole) prints what it printed, after a line naming the case.
_SIGTERM_CASES = """
import atexit, glob, os, signal, sys, time, weakref
import ray
from cars.cluster.signals import end_quietly_on_sigterm

context = ray.init(address="local", num_cpus=1, logging_level="WARNING", log_to_driver=False)

def wait_for(condition, what):
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)

class Model:
    pass

@ray.remote
class Trial:
    def exit_slowly(self, quiet, exiting):
        atexit.register(time.sleep, 20)  # a slow exit
        # Exit callbacks run last registered first: this one says the exit has begun.
        atexit.register(lambda: open(exiting, "w").close())
        if quiet:
            end_quietly_on_sigterm()
        return os.getpid()

    def train(self, quiet, freeing):
        if quiet:
            end_quietly_on_sigterm()
        self.model = Model()

        def freed(_):
            open(freeing, "w").close()
            time.sleep(20)

        self.watch = weakref.ref(self.model, freed)
        return os.getpid()

    def free(self):
        del self.model

def at_exit(quiet, mark):
    trial = Trial.remote()
    pid = ray.get(trial.exit_slowly.remote(quiet, mark))
    trial.__ray_terminate__.remote()
    wait_for(lambda: os.path.exists(mark), "the actor's exit to begin")
    os.kill(pid, signal.SIGTERM)
    return pid

def in_a_callback(quiet, mark):
    trial = Trial.remote()
    pid = ray.get(trial.train.remote(quiet, mark))
    freed = trial.free.remote()
    wait_for(lambda: os.path.exists(mark), "the weakref callback")
    os.kill(pid, signal.SIGTERM)
    try:
        ray.get(freed, timeout=60)
    except ray.exceptions.RayError:
        pass  # the actor may end with the signal
    ray.kill(trial)
    return pid

for case in sys.argv[1:]:
    script, mode = case.split(":")
    mark = os.path.abspath(case.replace(":", "-"))
    pid = {"at-exit": at_exit, "in-a-callback": in_a_callback}[script](mode == "quiet", mark)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the actor's process to end")
    print(f"=== {case} exited")
    logs = os.path.join(context.address_info["session_dir"], "logs", f"worker-*-{pid}.*")
    for log in sorted(glob.glob(logs)):
        print(open(log).read())
"""
_SIGTERM_SCRIPTS = ("at-exit", "in-a-callback")
_SIGTERM_MODES = {True: "quiet", False: "as-ray-leaves-it"}


@pytest.fixture(scope="module")
def sigterm_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The driver's own output, and what each case's actor printed, by case."""
    cases = [f"{script}:{mode}" for script in _SIGTERM_SCRIPTS for mode in _SIGTERM_MODES.values()]
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_CASES, *cases],
        cwd=tmp_path_factory.mktemp("sigterm"),
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    driver = done.stdout + done.stderr
    assert done.returncode == 0, driver[-3000:]
    printed = {}
    for section in done.stdout.split("=== ")[1:]:
        case, _, rest = section.partition(" exited\n")
        printed[case] = rest
    assert sorted(printed) == sorted(cases), driver[-3000:]
    return done.stderr, printed


@pytest.mark.parametrize("quiet", [True, False])
@pytest.mark.parametrize("script", _SIGTERM_SCRIPTS)
def test_a_sigterm_ray_sends_a_trained_process_prints_no_traceback(
    script: str, quiet: bool, sigterm_cases: tuple[str, dict[str, str]]
) -> None:
    driver_errors, printed = sigterm_cases
    output = printed[f"{script}:{_SIGTERM_MODES[quiet]}"]
    # Ray's own handler raises SystemExit where Python can only print it.
    shown = "Exception ignored" in output or "Traceback" in output
    assert shown != quiet, output[-3000:]
    assert "Traceback" not in driver_errors, driver_errors[-3000:]
