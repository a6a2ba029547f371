"""The smoke sweep through Ray on a GPU machine: trials in their own process, and a worker group.

Runs ``jobs/sweep.py --preset smoke`` twice, each under its own time limit, and
records what each run did and how fast its trials trained:

1. ``local``: every regime, one GPU worker per trial, so each trial trains in its
   own process on the GPU Ray assigned it, and the report is written;
2. ``group``: the ``scratch`` regime as a Ray Train group of two workers. Two GPU
   workers need two GPUs (NCCL refuses two ranks on one device), so on a machine
   of one GPU the group's workers train on the CPU (``--cpu``); on two GPUs or
   more, on the GPUs (``--gpu``).

It writes ``<date>_ray-smoke_<gpu>.json`` and ``.md`` (the trials' speeds and the
sweeps' times) and one log per sweep into ``--out``; the runs and reports stay in a
temporary folder. On the GPU check machine Ray travels as the bundle that
``benchmarks/ray_bundle.py`` makes (see ``benchmarks/results/README.md``):

    python3 benchmarks/ray_gpu_smoke.py --out $OUT --image-size 128

Here, without a GPU, ``--cpu`` runs both sweeps on the CPU to show the flow.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from gpu_check import run_logged  # beside this script, as Python runs it

TRIAL_FIGURES = (
    "regime",
    "augment",
    "trainable_blocks",
    "status",
    "epochs_run",
    "best_val_acc",
    "seconds_per_epoch",
    "images_per_second",
)


def sweep_commands(image_size: int, gpus: int, cpu: bool) -> dict[str, list[str]]:
    """The two sweeps' command lines, by name."""
    base = [sys.executable, "jobs/sweep.py", "--preset", "smoke", "--image-size", str(image_size)]
    local_device = "--cpu" if cpu or gpus == 0 else "--gpu"
    group_device = "--gpu" if not cpu and gpus >= 2 else "--cpu"
    return {
        "local": [*base, "--num-workers", "1", local_device],
        "group": [*base, "--num-workers", "2", group_device, "--regimes", "scratch", "--no-report"],
    }


def run_sweep(
    name: str, command: list[str], work: Path, out: Path, limit_s: float
) -> dict[str, Any]:
    """One sweep under ``limit_s``: its exit status, seconds, and its trials' figures."""
    storage, reports = work / name / "runs", work / name / "reports"
    full = [*command, "--name", name, "--storage", str(storage), "--reports", str(reports)]
    code, seconds = run_logged(full, out / f"ray-smoke-{name}.log", limit_s)
    return {
        "command": " ".join(full[1:]),
        "status": f"stopped at {limit_s:.0f} s" if code is None else f"exit status {code}",
        "seconds": seconds,
        "trials": read_trials(storage, name),
    }


def read_trials(storage: Path, name: str) -> list[dict[str, Any]]:
    """Each trial's regime, outcome and speed, read back as the report reads a sweep."""
    if not (storage / name).is_dir():
        return []
    from cars.report.results import read_sweep_results

    try:
        trials = read_sweep_results(str(storage / name)).trials
    except Exception as error:  # the record says why, whatever stopped the reading
        return [{"status": f"could not read the sweep: {error}"}]
    kept = [c for c in TRIAL_FIGURES if c in trials.columns]
    frame = trials[kept].astype(object).where(pd.notna(trials[kept]), None)
    return frame.to_dict("records")


def render_markdown(record: dict[str, Any]) -> str:
    """The record as a Markdown page."""
    lines = [
        f"# The smoke sweep through Ray, {record['time_utc']}: {record['gpu']}",
        "",
        f"Python {record['python']}, torch {record['torch']}, Ray {record['ray']}; "
        f"{record['gpus']} GPU(s). {record['image_size']} px.",
    ]
    for name, sweep in record["sweeps"].items():
        lines += [
            "",
            f"## {name}: {sweep['status']}, {sweep['seconds']:.0f} s",
            "",
            f"`{sweep['command']}`",
            "",
            "| " + " | ".join(TRIAL_FIGURES) + " |",
            "|" + "---|" * len(TRIAL_FIGURES),
        ]
        for trial in sweep["trials"]:
            cells = [trial.get(c) for c in TRIAL_FIGURES]
            lines.append(
                "| "
                + " | ".join(
                    "" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
                    for v in cells
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run both sweeps; 0 when both finished."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cpu", action="store_true", help="both sweeps on the CPU")
    parser.add_argument("--local-limit-s", type=float, default=240.0)
    parser.add_argument("--group-limit-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import platform

    import ray
    import torch

    gpus = torch.cuda.device_count()
    now = datetime.datetime.now(datetime.UTC)
    record: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d"),
        "time_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": torch.cuda.get_device_name(0) if gpus else "no GPU",
        "gpus": gpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "image_size": args.image_size,
        "sweeps": {},
    }
    limits = {"local": args.local_limit_s, "group": args.group_limit_s}
    with tempfile.TemporaryDirectory(prefix="ray-smoke-") as work:
        for name, command in sweep_commands(args.image_size, gpus, args.cpu).items():
            record["sweeps"][name] = run_sweep(name, command, Path(work), args.out, limits[name])
            print(f"{name}: {record['sweeps'][name]['status']}", flush=True)
    stem = f"{record['date']}_ray-smoke_{record['gpu'].replace(' ', '-')}"
    for suffix, text in ((".json", json.dumps(record, indent=2)), (".md", render_markdown(record))):
        partial = args.out / f"{stem}{suffix}.tmp"
        partial.write_text(text)
        partial.replace(args.out / f"{stem}{suffix}")
    print(render_markdown(record))
    finished = all(s["status"] == "exit status 0" for s in record["sweeps"].values())
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
