"""The built-in demo end to end: its wall time, and whether transfer beats scratch.

Runs ``python jobs/sweep.py`` (the README's first command, without the install)
as a new process into a temporary storage and reports folder, so the source
model is pretrained afresh, then reads the report's ``regimes.parquet``.

    python benchmarks/bench_demo.py            # the demo, its data cache kept
    python benchmarks/bench_demo.py --cold     # also regenerate the demo's data
    python benchmarks/bench_demo.py -- --preset smoke   # anything after -- goes to sweep.py

Each line of the job's output is echoed with the seconds since the start, so
the time of each stage (data, source model, each trial, report) can be read
off. At the end it prints the wall time of the job, each regime's best
validation and test accuracy, whether the pretrained regimes beat ``scratch``
on both, and the report's paired test comparisons (``comparisons.parquet``:
difference, bootstrap interval, McNemar p-value), as ``summary.md`` states them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from cars.demo import DEMO_DATA_DIR
from cars.paths import PROJECT_ROOT
from cars.report.comparisons import describe_comparison

SWEEP_JOB = PROJECT_ROOT / "jobs" / "sweep.py"
NAME = "bench-demo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line; arguments after ``--`` go to ``jobs/sweep.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cold",
        action="store_true",
        help=f"delete the cached demo data ({DEMO_DATA_DIR}) first, so it is drawn again",
    )
    parser.add_argument("sweep_args", nargs="*", help="extra arguments of jobs/sweep.py")
    return parser.parse_args(argv)


def run_demo(storage: Path, reports: Path, extra: list[str]) -> float:
    """Run the sweep job to completion; its wall time in seconds."""
    command = [sys.executable, str(SWEEP_JOB), "--name", NAME, "--storage", str(storage)]
    command += ["--reports", str(reports), *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    # Unbuffered, so each line is timed as it is written, not when a pipe buffer fills.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as job:
        assert job.stdout is not None
        for line in job.stdout:
            print(f"[{time.perf_counter() - started:6.1f} s] {line}", end="", flush=True)
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"jobs/sweep.py exited with {job.returncode} after {wall:.0f} s")
    return wall


def _percent(value: float) -> str:
    return "   n/a" if pd.isna(value) else f"{100 * value:5.1f}%"


def main(argv: list[str] | None = None) -> None:
    """Run the demo, then print its time and each regime's best trial."""
    args = parse_args(argv)
    if args.cold and DEMO_DATA_DIR.exists():
        shutil.rmtree(DEMO_DATA_DIR)
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as scratch:
        storage, reports = Path(scratch) / "runs", Path(scratch) / "reports"
        wall = run_demo(storage, reports, args.sweep_args)
        regimes = pd.read_parquet(reports / NAME / "regimes.parquet")
        comparisons_file = reports / NAME / "comparisons.parquet"
        comparisons = pd.read_parquet(comparisons_file) if comparisons_file.exists() else None

    minutes, seconds = divmod(round(wall), 60)
    print(f"\ndemo wall time: {minutes} min {seconds:02d} s ({wall:.0f} s)")
    print("regime      best val   test    trial")
    for row in regimes.itertuples():
        val, test = _percent(row.best_val_acc), _percent(row.test_acc)
        print(f"{row.regime:<10} {val} {test}  {row.trial_id}")
    scores = regimes.set_index("regime")
    if "scratch" not in scores.index or len(scores) < 2:
        print(
            "transfer beats scratch: not measured (the sweep lacks scratch or a pretrained regime)"
        )
        return
    pretrained = scores.drop(index="scratch")
    for column in ("best_val_acc", "test_acc"):
        beats = bool((pretrained[column] > scores.loc["scratch", column]).all())
        print(f"transfer beats scratch on {column}: {'yes' if beats else 'no'}")
    if comparisons is not None:
        print("paired test comparisons (the report's comparisons.parquet):")
        for _, row in comparisons[comparisons["measure"] == "test_acc"].iterrows():
            print(f"  {describe_comparison(row)}")


if __name__ == "__main__":
    main()
