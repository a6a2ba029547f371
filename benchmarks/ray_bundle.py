"""Measure whether Ray fits in what one call to the GPU check machine may carry.

    python benchmarks/ray_bundle.py --out /tmp/ray-bundle            # sizes only
    python benchmarks/ray_bundle.py --out /tmp/ray-bundle --python 3.12 --limit-mib 64
    python benchmarks/ray_bundle.py --out /tmp/ray-bundle --carry .whl   # ready to carry

The GPU machine runs Python 3.12 with torch, timm, pandas, pyarrow and scipy but no Ray,
and a call brings at most 64 MiB of files. This downloads the Ray wheel this project
pins for that Python, repacks it as an xz tarball without what a sweep never loads
(the Java jars, the dashboard's web client, RLlib, Serve, Ray LLM), downloads the
wheels the machine lacks, and prints each size and the total against the limit, for
two bundles: what a sweep needs to train, and the same plus what its report needs
(Grad-CAM; OpenCV and scikit-learn under it are on the machine already). Extracted
into one folder on ``PYTHONPATH`` (the repacked tarball as it is, the wheels
installed with ``pip --target``), the bundle is importable there; the whole call is
in ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

RAY = "ray==2.60.0"
# Never imported by a sweep, a trial or a Ray Train worker group.
DROPPED = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/serve/", "ray/llm/")
# Ray core, Tune and Train need these beyond what the machine has (its note lists
# aiohttp, grpcio, msgpack, protobuf, pyarrow, pandas, click, pyyaml, requests, fsspec).
FOR_TRAINING = ("jsonschema", "tensorboardX", "pydantic", "simplejpeg")
# The report's Grad-CAM: pytorch-grad-cam imports OpenCV, ttach and scikit-learn.
FOR_REPORT = ("grad-cam>=1.5.4,<2", "ttach", "opencv-python-headless", "scikit-learn")
# Already on the machine (the device tool's KINDS.md lists its packages), pulled in
# again only as dependencies of the above: OpenCV and scikit-learn, which Grad-CAM
# imports, among them.
# protobuf and typing_extensions travel all the same: Ray's generated code and
# pydantic need versions newer than an image may hold, and they weigh 0.4 MiB.
PRESENT = (
    "numpy",
    "packaging",
    "scipy",
    "pillow",
    "opencv_python_headless",
    "scikit_learn",
)
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


def download(requirements: tuple[str, ...], folder: Path, python: str, deps: bool) -> None:
    """``pip download`` wheels for the GPU machine's Python (sdists where no wheel exists)."""
    command = [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder)]
    command += ["--python-version", python, "--only-binary=:all:"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    if not deps:
        command.append("--no-deps")
    wheels = [r for r in requirements if not r.startswith("grad-cam") and r != "ttach"]
    subprocess.run([*command, *wheels], check=True)
    pure = [r for r in requirements if r not in wheels]
    if pure:  # sdist or pure-Python: no platform to name
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), *pure],
            check=True,
        )


def repack(wheel: Path, out: Path) -> Path:
    """The wheel's files without ``DROPPED``, as an xz tarball."""
    tarball = out / (wheel.name.removesuffix(".whl") + "-slim.tar.xz")
    partial = tarball.with_name(tarball.name + ".partial")
    with (
        zipfile.ZipFile(wheel) as archive,
        tarfile.open(partial, "w:xz", preset=lzma.PRESET_DEFAULT) as packed,
    ):
        for member in archive.infolist():
            if member.is_dir() or member.filename.startswith(DROPPED):
                continue
            info = tarfile.TarInfo(member.filename)
            info.size = member.file_size
            info.mode = (member.external_attr >> 16) & 0o777 or 0o644
            with archive.open(member) as data:
                packed.addfile(info, data)
    partial.replace(tarball)
    return tarball


def mib(size: int) -> str:
    return f"{size / 2**20:6.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the downloads")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--limit-mib", type=float, default=64.0)
    parser.add_argument(
        "--carry",
        type=Path,
        help="also gather the bundle here, ready to carry: the tarball and every wheel "
        "(an sdist built into one)",
    )
    args = parser.parse_args(argv)
    ray_folder, training, report = (args.out / n for n in ("ray", "training", "report"))
    for folder in (ray_folder, training, report):
        folder.mkdir(parents=True, exist_ok=True)
    download((RAY,), ray_folder, args.python, deps=False)
    (wheel,) = ray_folder.glob("ray-*.whl")
    tarball = repack(wheel, ray_folder)
    download(FOR_TRAINING, training, args.python, deps=True)
    download(FOR_REPORT, report, args.python, deps=False)

    def carried(folder: Path) -> list[Path]:
        return sorted(
            f for f in folder.iterdir() if not f.name.lower().startswith(PRESENT) and f.is_file()
        )

    print(f"{wheel.name}: {mib(wheel.stat().st_size)} as a wheel")
    print(f"{tarball.name}: {mib(tarball.stat().st_size)} repacked without {', '.join(DROPPED)}")
    total = tarball.stat().st_size
    limit = int(args.limit_mib * 2**20)
    for name, folder in (("training", training), ("report", report)):
        for file in carried(folder):
            print(f"  {name}: {file.name}: {mib(file.stat().st_size)}")
        total += sum(f.stat().st_size for f in carried(folder))
        verdict = "fits" if total <= limit else "does not fit"
        print(f"Ray + what a sweep needs to {name}: {mib(total)}, {verdict} in {mib(limit)}")
    if args.carry is not None:
        gather(args.carry, tarball, [*carried(training), *carried(report)])
    return 0


def gather(folder: Path, tarball: Path, files: list[Path]) -> None:
    """The tarball and the wheels in ``folder``, each sdist built into a wheel there."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tarball, folder / tarball.name)
    for file in files:
        if file.suffix == ".whl":
            shutil.copy2(file, folder / file.name)
        else:
            command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder)]
            subprocess.run([*command, str(file)], check=True)
    total = sum(f.stat().st_size for f in folder.iterdir())
    print(f"gathered in {folder}: {mib(total)}")


if __name__ == "__main__":
    sys.exit(main())
