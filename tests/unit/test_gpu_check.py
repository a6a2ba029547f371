"""The prepared GPU check: the tests it runs, the record it names and writes, without Ray."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cars.paths import PROJECT_ROOT


def _load_gpu_check() -> ModuleType:
    path = PROJECT_ROOT / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()
ENVIRONMENT = {
    "date": "2026-12-03",
    "time_utc": "2026-12-03T10:00:00Z",
    "gpu": "NVIDIA H200",
    "driver": "580.159.04",
    "cuda": "13.0",
    "python": "3.12.3",
    "torch": "2.11.0+cu130",
    "timm": "1.0.31",
    "ray": "not installed",
    "grad_cam": "1.5.7",
    "pytest": "8.4.0",
    "cpus": 16,
}


def test_every_test_file_with_cuda_tests_is_run_by_the_check() -> None:
    uses_cuda = {
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in (PROJECT_ROOT / "tests").rglob("test_*.py")
        if re.search(r"^(@pytest\.mark\.cuda|from devices import)", path.read_text(), re.M)
    }
    assert uses_cuda == set(gpu_check.CUDA_TEST_FILES)


def test_the_record_is_named_by_date_gpu_and_versions() -> None:
    name = gpu_check.record_name(ENVIRONMENT)
    assert name == "2026-12-03_NVIDIA-H200_torch-2.11.0-cu130_timm-1.0.31_driver-580.159.04"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)  # what the device tool brings back


def test_a_file_whose_library_is_missing_is_left_out_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(
        gpu_check.importlib.util,
        "find_spec",
        lambda name: None if name == "pytorch_grad_cam" else found(name),
    )
    files, notes = gpu_check.select_test_files()
    assert not any(f.endswith("test_gradcam.py") for f in files)
    assert len(files) == len(gpu_check.CUDA_TEST_FILES) - 1
    assert notes == [
        "tests/unit/test_gradcam.py left out: pytorch_grad_cam is not installed; "
        "carry its wheels (.whl; see this script's docstring)"
    ]


def test_children_run_with_the_absent_libraries_unimportable(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\ntry:\n    import json\n    import ray\nexcept ImportError:\n"
        "    print('blocked', sys.argv[1:])\n"
    )
    command = gpu_check.python_command(["ray"], str(script), ["--flag", "1"])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "blocked ['--flag', '1']"


def test_test_outcomes_are_read_from_pytest_s_report(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n"
        "def test_passes():\n    pass\n"
        "def test_fails():\n    assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.skip(reason='needs CUDA')\ndef test_skipped():\n    pass\n"
    )
    junit = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         str(tmp_path / "test_probe.py")],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    rows = {row["test"].rsplit("::", 1)[1]: row for row in gpu_check.read_test_results(junit)}
    assert {name: row["outcome"] for name, row in rows.items()} == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
    }
    assert "one is not two" in rows["test_fails"]["message"]
    assert rows["test_skipped"]["message"] == "needs CUDA"
    assert gpu_check.read_test_results(tmp_path / "absent.xml") == []


def _record() -> dict:
    row = {"batch_size": 64, "ms_per_step": 40.0, "peak_gib": 9.0, "warmup_seconds": 3.0}
    rows = [
        {**row, "regime": "scratch", "rung": "today", "images_per_second": 1600.0, "status": "ok"},
        {**row, "regime": "scratch", "rung": "no host sync", "images_per_second": 2000.0,
         "status": "ok"},
        {**row, "regime": "scratch", "rung": "batch 256", "batch_size": 256,
         "images_per_second": None, "status": "out of memory"},
        {**row, "regime": "scratch", "rung": "torch.compile", "images_per_second": 3200.0,
         "status": "ok"},
    ]  # fmt: skip
    return {
        "environment": ENVIRONMENT,
        "command": "python benchmarks/gpu_check.py --out /o",
        "seconds": 400.0,
        "tests": {
            "status": "exit status 0",
            "counts": {"passed": 1, "failed": 0, "error": 0, "skipped": 0},
            "notes": [],
            "cases": [{"test": "t::test_a", "outcome": "passed", "message": ""}],
        },
        "bench": {"status": "exit status 0", "image_size": 299, "steps": 20, "warmup": 6,
                  "rows": rows},
    }  # fmt: skip


def test_the_markdown_table_compares_each_rung_with_today_and_the_last(tmp_path: Path) -> None:
    json_path, md_path = gpu_check.write_record(tmp_path, _record())
    assert json.loads(json_path.read_text())["environment"]["gpu"] == "NVIDIA H200"
    text = md_path.read_text()
    assert "| scratch | no host sync | 64 | 2000.0 | 40.0 | 1.25 | 1.25 |" in text
    assert "| scratch | batch 256 | 256 |  |" in text and "out of memory" in text
    assert "| scratch | torch.compile | 64 | 3200.0 | 40.0 | 2.00 | 1.60 |" in text
    assert "`scratch` at its fastest: 3200 images/s (goal 3,000: met)." in text
    assert "| `t::test_a` | passed |  |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == [json_path.name, md_path.name]


@pytest.mark.slow
def test_the_cuda_tests_are_collected_without_ray() -> None:
    files, _ = gpu_check.select_test_files()
    # The GPU machine has no pytest-xdist either: `-p no:xdist` leaves it out here.
    argv = [*gpu_check.cuda_tests_argv(files), "--collect-only", "-q", "-p", "no:xdist"]
    command = gpu_check.python_command(gpu_check.ABSENT_ON_GPU_MACHINE, "module:pytest", argv)
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"(\d+)/\d+ tests collected", done.stdout), done.stdout[-500:]
    collected = int(re.search(r"(\d+)/\d+ tests collected", done.stdout).group(1))
    assert collected >= 10
