"""Where a one-worker sweep trial's wall time goes, with and without a Ray Train worker group.

Runs a one-trial smoke sweep (one worker, a tiny synthetic set) on a local Ray
once per path, in the same process:

- ``workers``: the trial drives a Ray Train worker group (a controller actor, a
  placement group and a worker process);
- ``local``: the trial trains in its own process (:mod:`cars.cluster.trial`,
  persisting its checkpoints itself); what one-worker sweeps run.

Each trial's wall time is split on one clock (the worker's ``epoch_started_at``
and ``eval_seconds`` metrics, the modification time of the run's last file
written at its last checkpoint, and this process's clock around ``Tuner.fit``):

- start-up: ``Tuner.fit`` called -> the first epoch's first training step;
- training: the epochs' ``train_seconds`` (the rest of an epoch outside
  evaluation, a few milliseconds, is counted here too);
- evaluation: the epochs' ``eval_seconds`` (precise BN and validation);
- checkpointing: from each epoch's end to the next epoch's start, and for the
  last epoch to the run's last write (write, upload and report);
- tear-down: the run's last write -> ``Tuner.fit`` returned.

The fixed cost is start-up + tear-down. The script also times, in fresh
processes, the parts of start-up that are ours: starting Python, importing
torch and then the training loop's modules (timm, torchvision, pandas), opening
the data set and building the model.

    python benchmarks/bench_trial_overhead.py [--path both|workers|local] [--epochs 2]

``--poll-interval S`` sets how often a worker group's controller polls its workers
(``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``; the project's default otherwise): run it once
per value to see what polling costs a trial, e.g. ``--path workers --poll-interval 0.5``
against ``--poll-interval 0.2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cars.cluster.runtime import init_ray
from cars.cluster.sweep import create_tuner, plan_resources
from cars.cluster.train import HEALTH_CHECK_INTERVAL_ENV, HEALTH_CHECK_INTERVAL_S
from cars.data import SyntheticCars, prepare_synthetic, read_dataset_info
from cars.runs import train_run_name
from cars.sweep_config import SweepConfig, create_sweep_config

PATHS = ("workers", "local")
PHASES = ("start-up", "training", "evaluation", "checkpointing", "tear-down")

# Timed in a fresh interpreter, as a worker or a trial process meets them.
_STARTUP_PARTS = """
import json, sys, time
marks = [time.perf_counter()]
import torch
marks.append(time.perf_counter())
import cars.cluster.worker
marks.append(time.perf_counter())
from cars.config import TrainConfig
from cars.data import read_dataset_info
from cars.learn.model import build_model
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
info = read_dataset_info(config.data)
train_set, val_set = cars.cluster.worker.create_datasets(config)
train_set[0], val_set[0]
marks.append(time.perf_counter())
build_model(config.regime, info.num_classes, config.trainable_blocks, config.weights)
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="both", choices=("both", *PATHS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="trials per path (median shown)")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=float(os.environ.get(HEALTH_CHECK_INTERVAL_ENV, HEALTH_CHECK_INTERVAL_S)),
        help="seconds between a worker group controller's polls of its workers",
    )
    return parser.parse_args(argv)


def create_sweep(data: str, storage: str, name: str, args: argparse.Namespace) -> SweepConfig:
    """A one-trial smoke sweep of one worker."""
    return create_sweep_config(
        "smoke",
        name,
        data=data,
        storage=storage,
        weights="none",
        regimes=("frozen",),
        augments=("none",),
        num_samples=1,
        num_workers=1,
        epochs=args.epochs,
        image_size=args.image_size,
    )


def split_trial(
    epochs: list[dict[str, Any]], last_written: float, fit_started: float, fit_ended: float
) -> dict[str, float]:
    """A trial's wall time in :data:`PHASES`, from its epochs' metrics and the clock marks."""
    ends = [e["epoch_started_at"] + e["epoch_seconds"] for e in epochs]
    starts = [e["epoch_started_at"] for e in epochs]
    gaps = [start - end for end, start in zip(ends[:-1], starts[1:], strict=True)]
    checkpointing = sum(gaps) + (last_written - ends[-1])
    evaluation = sum(e["eval_seconds"] for e in epochs)
    return {
        "start-up": starts[0] - fit_started,
        "training": sum(e["epoch_seconds"] for e in epochs) - evaluation,
        "evaluation": evaluation,
        "checkpointing": checkpointing,
        "tear-down": fit_ended - last_written,
        "total": fit_ended - fit_started,
    }


def run_trial(sweep: SweepConfig, local_mode: bool) -> dict[str, float]:
    """Run the one-trial sweep on one path and split its wall time."""
    resources = dataclasses.replace(plan_resources(sweep), local_mode=local_mode)
    tuner = create_tuner(sweep, resources)
    started = time.time()
    results = tuner.fit()
    ended = time.time()
    if results.num_errors:
        raise SystemExit(f"the {sweep.name} trial failed: {results.errors}")
    result = results[0]
    frame = result.metrics_dataframe.sort_values("epoch")
    epochs = frame.drop_duplicates("epoch", keep="last").to_dict("records")
    run = Path(sweep.storage) / sweep.name / train_run_name(result.metrics["trial_id"])
    # The last checkpoint's history (in its own process), or Ray Train's snapshot after it.
    last_written = max(f.stat().st_mtime for f in run.rglob("*") if f.is_file())
    return split_trial(epochs, last_written, started, ended)


def time_startup_parts(sweep: SweepConfig) -> dict[str, float]:
    """Seconds of the parts of a trial's start-up that are ours, in a fresh process."""
    config = sweep.create_train_config(sweep.data, "frozen", 1e-3, "none")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - started
    output = subprocess.run(
        [sys.executable, "-c", _STARTUP_PARTS, json.dumps(config.to_dict())],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    torch_s, loop_s, data_s, model_s = json.loads(output.strip().splitlines()[-1])
    return {
        "start Python": python,
        "import torch": torch_s,
        "import the training loop (timm, torchvision, pandas...)": loop_s,
        "open the data set (and decode one image per split)": data_s,
        "build the model": model_s,
    }


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def main(argv: list[str] | None = None) -> None:
    """Run the trial on each path, print the split and the ratio local / workers."""
    args = parse_args(argv)
    paths = PATHS if args.path == "both" else (args.path,)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-trial-overhead-") as scratch:
        data = str(Path(scratch) / "set")
        prepare_synthetic(
            data, SyntheticCars(4, train_per_class=10, test_per_class=4), progress=False
        )
        # Before Ray starts: the trials' processes take the environment of this one.
        os.environ[HEALTH_CHECK_INTERVAL_ENV] = str(args.poll_interval)
        init_ray(num_cpus=2)
        figures: dict[str, dict[str, float]] = {}
        for path in paths:
            rows = []
            for repeat in range(args.repeats):
                sweep = create_sweep(data, str(Path(scratch) / "runs"), f"{path}-{repeat}", args)
                rows.append(run_trial(sweep, local_mode=path == "local"))
            figures[path] = _median(rows)
        parts = time_startup_parts(sweep)
        images = read_dataset_info(data).counts["train"]

    print(
        f"\none-worker smoke trial: frozen, {args.epochs} epochs of {images} training images at "
        f"{args.image_size}px on 2 CPUs, median of {args.repeats}, worker groups polled "
        f"every {args.poll_interval:g} s; seconds "
        f"(load average now {os.getloadavg()[0]:.1f}: other processes slow imports down)"
    )
    print(f"{'':16}" + "".join(f"{path:>10}" for path in paths))
    for phase in (*PHASES, "total"):
        print(f"{phase:16}" + "".join(f"{figures[p][phase]:10.1f}" for p in paths))
    fixed = {p: figures[p]["start-up"] + figures[p]["tear-down"] for p in paths}
    print(f"{'fixed cost':16}" + "".join(f"{fixed[p]:10.1f}" for p in paths))
    if len(paths) == 2:
        print(
            f"local / workers: fixed cost {fixed['local'] / fixed['workers']:.2f}, "
            f"trial wall time {figures['local']['total'] / figures['workers']['total']:.2f}"
        )
    print("\nparts of start-up that are ours (fresh process, seconds):")
    for part, seconds in parts.items():
        print(f"  {part:56} {seconds:6.1f}")


if __name__ == "__main__":
    main()
