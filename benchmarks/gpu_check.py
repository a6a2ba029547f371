"""The GPU check: the CUDA tests and bench_gpu.py's speed ladder in one call, recorded.

On a machine with a CUDA GPU it

1. records the date, the GPU, its driver, and the versions of Python, torch, timm
   and CUDA;
2. runs the tests marked ``cuda`` (the files in ``CUDA_TEST_FILES``) with pytest:
   resume, engine (no host sync in a step), normalisation, compilation, fused
   optimizer steps, cuDNN's benchmark mode, Grad-CAM and the classifier on CUDA;
3. runs ``benchmarks/bench_gpu.py``: every regime at today's settings, then with
   each speed-up, and ``torch.compile`` as the time left allows;
4. writes ``<date>_<gpu>_torch-<v>_timm-<v>_driver-<v>.json`` and ``.md`` (the
   tables), with the raw logs beside them, into ``--out``.

None of it imports Ray: the lent GPU machine has Python 3.12, torch, timm, pandas,
pyarrow, scipy and pytest, but no Ray, grad-cam, tensorboardX or jsonschema.
grad-cam (pure Python) travels as wheels; without them the Grad-CAM test is left
out and the record says so. The whole check keeps within ``--budget-s`` (420 s).

With the device tool, from the repository root; once, here:

    echo /.whl/ >> .git/info/exclude
    python -m pip wheel --no-deps -w .whl grad-cam==1.5.7 ttach==0.0.3

then one call (``timeout_s`` 480, ``carry`` [".whl"]):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site;
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

and copy the returned ``.json`` and ``.md`` into ``benchmarks/results/``
(``benchmarks/results/README.md``). Here, without a GPU, ``--cpu-dry-run`` runs
the same steps on the CPU at tiny sizes, with Ray made unimportable, to show that
the script works:

    python benchmarks/gpu_check.py --cpu-dry-run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
CUDA_TEST_FILES = (
    "tests/unit/test_training_state.py",
    "tests/unit/test_engine.py",
    "tests/unit/test_normalize.py",
    "tests/unit/test_compiled.py",
    "tests/unit/test_optim.py",
    "tests/unit/test_device.py",
    "tests/unit/test_classifier.py",
    "tests/unit/test_gradcam.py",
)
# What a test file needs beyond the project's Ray-free core, and how to bring it.
EXTRA_MODULES = {"tests/unit/test_gradcam.py": "pytorch_grad_cam"}
CARRY_HINT = "carry its wheels (.whl; see this script's docstring)"
# What the lent GPU machine lacks; the dry run makes them unimportable, as there.
ABSENT_ON_GPU_MACHINE = ("ray", "tensorboardX", "jsonschema")
# Seconds kept back: one compiled measurement, which bench_gpu.py starts only before this.
COMPILE_RESERVE_S = 150
TESTS_LIMIT_S = 200
# Steps per measurement on the GPU: enough for a stable rate, few enough for the budget.
GPU_BENCH = ["--steps", "20", "--warmup", "6"]
DRY_RUN_BENCH = [
    *("--device", "cpu", "--image-size", "32", "--batch-sizes", "2", "4"),
    *("--steps", "1", "--warmup", "1", "--no-amp", "--compile-backend", "aot_eager"),
    *("--loader-images", "2", "--loader-cores", "2"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The check's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="where the record goes (default: benchmarks/results/)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="seconds for the whole check (default 420)"
    )
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="every step on the CPU at tiny sizes, without Ray, into a temporary folder",
    )
    parser.add_argument(
        "--bench-args", nargs=argparse.REMAINDER, default=[], help="passed on to bench_gpu.py"
    )
    return parser.parse_args(argv)


def package_version(name: str) -> str:
    """An installed distribution's version, or ``not installed``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def read_gpu() -> tuple[str, str]:
    """The first GPU's name and the driver's version, from nvidia-smi; ``none`` without one."""
    if shutil.which("nvidia-smi") is None:
        return "none", "none"
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    done = subprocess.run(query, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return "unknown", "unknown"
    name, _, driver = done.stdout.splitlines()[0].partition(",")
    return name.strip(), driver.strip()


def describe_environment(dry_run: bool) -> dict[str, Any]:
    """Date, machine, GPU, driver and the versions that decide the figures."""
    import torch

    gpu, driver = read_gpu()
    if torch.cuda.is_available() and gpu in ("none", "unknown"):
        gpu = torch.cuda.get_device_name(0)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "time_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": "CPU dry run" if dry_run else gpu,
        "driver": driver,
        "cuda": torch.version.cuda or "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": package_version("timm"),
        "ray": package_version("ray"),
        "grad_cam": package_version("grad-cam"),
        "pytest": package_version("pytest"),
        "cpus": os.cpu_count(),
    }


def record_name(environment: dict[str, Any]) -> str:
    """The record's file name (no suffix): date, GPU, and the torch, timm and driver versions.

    Letters, digits, ``.``, ``_`` and ``-`` only, as the device tool returns files.
    """

    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-") or "unknown"

    return "_".join(
        [
            slug(environment["date"]),
            slug(environment["gpu"]),
            f"torch-{slug(environment['torch'])}",
            f"timm-{slug(environment['timm'])}",
            f"driver-{slug(environment['driver'])}",
        ]
    )


def select_test_files(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """The CUDA test files that can run here, and a note for each left out and why."""
    files, notes = [], []
    for file in CUDA_TEST_FILES:
        module = EXTRA_MODULES.get(file)
        if module is not None and importlib.util.find_spec(module) is None:
            notes.append(f"{file} left out: {module} is not installed; {CARRY_HINT}")
            continue
        files.append(str(root / file))
    return files, notes


def python_command(blocked: Sequence[str], run: str, argv: Sequence[str]) -> list[str]:
    """This Python running ``run`` (``module:<name>`` or a script's path) with ``argv``,
    with the ``blocked`` modules unimportable (a None entry in ``sys.modules``)."""
    kind, _, target = run.partition(":")
    runner = (
        f"runpy.run_module({target!r}, run_name='__main__', alter_sys=True)"
        if kind == "module"
        else f"runpy.run_path({run!r}, run_name='__main__')"
    )
    code = (
        "import runpy, sys; "
        f"sys.modules.update(dict.fromkeys({list(blocked)!r})); "
        f"sys.argv = {[run, *argv]!r}; {runner}"
    )
    return [sys.executable, "-c", code]


def run_logged(command: list[str], log: Path, limit_s: float) -> tuple[int | None, float]:
    """Run ``command`` from the project root, its output echoed and kept in ``log``.

    Returns the exit status (``None`` when it was stopped at ``limit_s``) and its seconds.
    """
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        stopper = threading.Timer(max(1.0, limit_s), process.kill)
        stopper.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                print(line, end="", flush=True)
            code = process.wait()
        finally:
            stopped = not stopper.is_alive()
            stopper.cancel()
    return (None if stopped else code), time.perf_counter() - started


def read_test_results(junit: Path) -> list[dict[str, str]]:
    """One row per test case of a JUnit XML report: its id, outcome and message."""
    if not junit.is_file():
        return []
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (
                    (found.get("message") or "").splitlines()[0][:200]
                    if found.get("message")
                    else ""
                )
                break
        rows.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "message": message,
            }
        )
    return rows


def cuda_tests_argv(files: Sequence[str]) -> list[str]:
    """pytest's arguments for the CUDA tests in ``files``, in one process.

    Not the project's ``addopts``: they run the tests in two processes through
    pytest-xdist, which the GPU machine lacks.
    """
    return ["-o", "addopts=-ra --strict-markers", "-m", "cuda", "-p", "no:cacheprovider", *files]


def run_tests(out: Path, blocked: Sequence[str], limit_s: float) -> dict[str, Any]:
    """The CUDA tests through pytest; their outcome per test and in all."""
    files, notes = select_test_files()
    if importlib.util.find_spec("pytest") is None:
        return {
            "status": "not run: pytest is not installed; carry its wheel",
            "notes": notes,
            "cases": [],
        }
    junit = out / "cuda-tests.xml"
    argv = [*cuda_tests_argv(files), "-q", "-rs", f"--junitxml={junit}"]
    code, seconds = run_logged(
        python_command(blocked, "module:pytest", argv), out / "cuda-tests.log", limit_s
    )
    cases = read_test_results(junit)
    counts = {
        k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")
    }
    status = "stopped at the time limit" if code is None else f"exit status {code}"
    return {"status": status, "seconds": seconds, "counts": counts, "notes": notes, "cases": cases}


def run_bench(
    out: Path, blocked: Sequence[str], limit_s: float, extra: Sequence[str]
) -> dict[str, Any]:
    """bench_gpu.py within ``limit_s``: its figures, complete or as far as it got."""
    figures_file = out / "bench-gpu.json"
    budget = max(0.0, limit_s - COMPILE_RESERVE_S)
    argv = ["--json", str(figures_file), "--budget-s", f"{budget:.0f}", *extra]
    script = str(ROOT / "benchmarks" / "bench_gpu.py")
    code, seconds = run_logged(
        python_command(blocked, script, argv), out / "bench-gpu.log", limit_s
    )
    figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {"rows": []}
    figures["status"] = "stopped at the time limit" if code is None else f"exit status {code}"
    figures["wall_seconds"] = seconds
    return figures


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def render_markdown(record: dict[str, Any]) -> str:
    """The record as one Markdown page: the machine, the tests, the ladder table."""
    env, tests, bench = record["environment"], record["tests"], record["bench"]
    lines = [
        f"# GPU check {env['time_utc']}: {env['gpu']}",
        "",
        f"Driver {env['driver']}, CUDA {env['cuda']}, Python {env['python']}, "
        f"torch {env['torch']}, timm {env['timm']}, Ray {env['ray']}, "
        f"grad-cam {env['grad_cam']}; {env['cpus']} CPUs.",
        f"Command: `{record['command']}` ({record['seconds']:.0f} s).",
        "",
        f"## CUDA tests ({tests['status']})",
        "",
    ]
    counts = tests.get("counts") or {}
    lines.append(
        ", ".join(f"{n} {k}" for k, n in counts.items()) + "." if counts else "No test ran."
    )
    lines += [f"- {note}" for note in tests.get("notes", [])]
    lines += ["", "| test | outcome | message |", "|---|---|---|"]
    lines += [
        f"| `{c['test']}` | {c['outcome']} | {c['message']} |" for c in tests.get("cases", [])
    ]
    lines += [
        "",
        f"## Training images/s ({bench.get('status')}; {bench.get('image_size')} px, "
        f"{bench.get('steps')} timed steps after {bench.get('warmup')})",
        "",
        "| regime | rung | batch/GPU | images/s | ms/step | x today | x last | peak GiB "
        "| warmup s | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rates: dict[str, list[float]] = {}
    for row in bench.get("rows", []):
        rate = row.get("images_per_second")
        seen = rates.setdefault(row["regime"], [])
        today = seen[0] if seen else rate
        last = seen[-1] if seen else rate
        if rate:
            seen.append(rate)
        ratio_today = rate / today if rate and today else None
        ratio_last = rate / last if rate and last else None
        lines.append(
            f"| {row['regime']} | {row['rung']} | {row['batch_size']} | {_fmt(rate, '.1f')} | "
            f"{_fmt(row.get('ms_per_step'), '.1f')} | {_fmt(ratio_today, '.2f')} | "
            f"{_fmt(ratio_last, '.2f')} | {_fmt(row.get('peak_gib'), '.2f')} | "
            f"{_fmt(row.get('warmup_seconds'), '.1f')} | {row['status']} |"
        )
    cached = bench.get("cached_frozen")
    if cached:
        lines += [
            "",
            "Frozen on cached features: computing them "
            f"{cached['computing_features']:.0f} images/s, the head on them "
            f"{cached['head_on_features']:.0f} images/s.",
        ]
    loader = bench.get("loader_per_core")
    if loader:
        per_core = ", ".join(f"{k} {v:.0f}" for k, v in loader.items())
        lines.append(f"Loader, images/s per CPU core (decode + transform): {per_core}.")
    scratch = max(rates.get("scratch", []), default=None)
    if scratch is not None:
        verdict = "met" if scratch >= 3000 else "not met"
        lines += ["", f"`scratch` at its fastest: {scratch:.0f} images/s (goal 3,000: {verdict})."]
    return "\n".join(lines) + "\n"


def write_record(out: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    """The record as JSON and Markdown in ``out``, each through a temporary name."""
    name = record_name(record["environment"])
    paths = (out / f"{name}.json", out / f"{name}.md")
    for path, text in zip(
        paths, (json.dumps(record, indent=2), render_markdown(record)), strict=True
    ):
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(text)
        partial.replace(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; 0 when every test passed and the bench completed, else 1."""
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here; --cpu-dry-run checks the script's flow on the CPU")
        return 2
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="gpu-check-")) if args.cpu_dry_run else RESULTS_DIR
    )
    out.mkdir(parents=True, exist_ok=True)
    blocked = ABSENT_ON_GPU_MACHINE if args.cpu_dry_run else ()
    environment = describe_environment(args.cpu_dry_run)
    print(json.dumps(environment, indent=2), flush=True)

    def left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    tests = run_tests(out, blocked, min(TESTS_LIMIT_S, left() - COMPILE_RESERVE_S))
    extra = [*(DRY_RUN_BENCH if args.cpu_dry_run else GPU_BENCH), *args.bench_args]
    bench = run_bench(out, blocked, left() - 10, extra)
    record = {
        "environment": environment,
        "command": " ".join(
            ["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "seconds": time.perf_counter() - started,
        "tests": tests,
        "bench": bench,
    }
    json_path, md_path = write_record(out, record)
    print(f"\n{render_markdown(record)}\nwrote {json_path}\nwrote {md_path}")
    failed = tests.get("counts", {}).get("failed", 0) + tests.get("counts", {}).get("error", 0)
    return 0 if not failed and bench.get("complete") and tests["status"] == "exit status 0" else 1


if __name__ == "__main__":
    sys.exit(main())
