"""Images per second per core: decoding + the `basic` transform at 299 px, read from a
prepared set (Parquet, via CarsDataset) against the same images' original JPEG files.

    python benchmarks/bench_data.py                  # generates ~500x375 synthetic photos
    python benchmarks/bench_data.py --data SET [--source DIR] [--images 500]

One process and one torch thread, so the figures are per core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from cars.data import (
    CarsDataset,
    create_transform_for,
    prepare_dataset,
    read_dataset_info,
    write_synthetic_cars,
)
from cars.paths import resolve_path


def _rate(count: int, load: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(count):
        load(i)
    return count / (time.perf_counter() - start)


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def run_benchmark(data: str, source: Path | None, images: int, image_size: int) -> None:
    """Print the table for the first ``images`` training images of ``data``."""
    transform = create_transform_for("basic", image_size, is_training=True)
    dataset = CarsDataset(data, "train")
    count = min(images, len(dataset))
    start = time.perf_counter()
    dataset.read_image(0)  # the first access loads the image column
    print(f"loading the image column of {len(dataset)} rows: {time.perf_counter() - start:.2f} s")
    step = f"decode + basic @ {image_size}"
    rows = [
        ("prepared set", "decode", _rate(count, dataset.read_image)),
        ("prepared set", step, _rate(count, lambda i: transform(dataset.read_image(i)))),
    ]
    if source is not None:
        paths = [source / f for f in dataset.source_files[:count]]
        rows += [
            ("original JPEGs", "decode", _rate(count, lambda i: _open_rgb(paths[i]))),
            ("original JPEGs", step, _rate(count, lambda i: transform(_open_rgb(paths[i])))),
        ]
    print(f"\n{count} images, 1 thread; images per second per core")
    print(f"{'read from':<16} {'step':<28} {'img/s':>8}")
    for name, what, rate in rows:
        print(f"{name:<16} {what:<28} {rate:>8.1f}")


def main() -> None:
    """Parse the options, generate data if none is given, and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a prepared set; by default one is generated")
    parser.add_argument("--source", help="its original folder (default: as in dataset.json)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=299)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        if args.data is None:
            source = write_synthetic_cars(
                Path(tmp) / "source",
                num_classes=4,
                train_per_class=-(-args.images // 4),
                test_per_class=0,
                widths=(450, 550),  # about the size of Stanford Cars photos
            )
            data = str(Path(tmp) / "prepared")
            prepare_dataset(source, data, val_fraction=0.0, progress=False)
        else:
            data = resolve_path(args.data)
            source = Path(args.source or read_dataset_info(data).source)
        run_benchmark(data, source if source.is_dir() else None, args.images, args.image_size)


if __name__ == "__main__":
    main()
