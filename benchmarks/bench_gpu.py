"""Training images per second on one GPU, per regime: today's settings, then each speed-up.

Synthetic uint8 batches already on the device (the loader is measured apart, at
the end) go through the project's own ``build_model`` / ``create_optimizer`` /
``train_one_epoch``, at 299 px, in bf16 autocast and channels_last. Every regime
climbs one ladder of settings; each rung adds one speed-up to the rung before,
so each figure is measured against the last, in one run:

==================  ===========================================================
rung                what it adds
==================  ===========================================================
``today``           batch 64 per GPU, AdamW's foreach kernels, cuDNN's default
                    kernels, eager; the host waits for the device at every step,
                    as the engine did when it copied the normalisation constants
                    and the batch's image count from the host at every batch
``no host sync``    the engine as it is: its sums stay on the device until the
                    epoch ends
``cudnn.benchmark`` cuDNN times its kernels once for the input shape
``fused AdamW``     one fused kernel per optimizer step
``batch N``         N images per step and GPU, for each ``--batch-sizes`` beyond
                    the first
``torch.compile``   the model compiled (inductor), at the regime's fastest batch;
                    ``warmup s`` then includes the compilation
==================  ===========================================================

Then the frozen regime on cached features (computing them once; the head on
them every epoch) and the loader's CPU cost per core at the same input size,
with whether the cores given keep each regime fed.

    python benchmarks/bench_gpu.py                       # on a GPU, the whole ladder
    python benchmarks/bench_gpu.py --json figures.json   # and the figures as JSON
    python benchmarks/bench_gpu.py --device cpu --image-size 64 --batch-sizes 4 8 \\
        --steps 2 --warmup 1 --compile-backend aot_eager --loader-images 4   # flow check

It imports no Ray: the GPU machine of the checks has none (``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch

from cars.config import TrainConfig
from cars.data import SyntheticCars, create_transform_for, write_synthetic_cars
from cars.data.decoding import decode_input
from cars.data.normalize import create_input_normalizer
from cars.learn.compiled import CompiledModule, compile_model
from cars.learn.engine import train_one_epoch
from cars.learn.features import feature_head
from cars.learn.model import build_model, count_parameters
from cars.learn.optim import create_loss, create_optimizer, create_scheduler
from cars.learn.precision import autocast

NUM_CLASSES = 196
REGIMES = {"scratch": ("scratch", None), "frozen": ("frozen", None), "finetune-1": ("finetune", 1)}
LOADER_POLICIES = ("basic", "strong")
# Distinct batches cycled through: enough that no step reuses the last one's input.
DISTINCT_BATCHES = 4
Batch = tuple[torch.Tensor, torch.Tensor]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[64, 128, 256],
        help="images per step and GPU; the first is today's (default: 64 128 256)",
    )
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first")
    parser.add_argument(
        "--regimes", nargs="+", choices=sorted(REGIMES), default=list(REGIMES), metavar="REGIME"
    )
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile's backend (aot_eager: trace only, for a quick flow check)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no compiled measurement after this many seconds (they take minutes)",
    )
    parser.add_argument("--no-amp", action="store_true", help="full precision, no bf16 autocast")
    parser.add_argument(
        "--loader-images", type=int, default=64, help="JPEGs to time the loader on (0: skip)"
    )
    parser.add_argument(
        "--loader-cores",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU cores the loader would have (default: this machine's)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Setting:
    """One rung of the ladder: how a regime is trained for a measurement."""

    rung: str
    batch_size: int
    host_sync: bool = True
    cudnn_benchmark: bool = False
    fused: bool = False
    compile: bool = False


def create_ladder(batch_sizes: list[int]) -> list[Setting]:
    """Today's setting, then one speed-up more at each rung (compilation is added later)."""
    today = Setting("today", batch_sizes[0])
    no_sync = dataclasses.replace(today, rung="no host sync", host_sync=False)
    benchmark = dataclasses.replace(no_sync, rung="cudnn.benchmark", cudnn_benchmark=True)
    fused = dataclasses.replace(benchmark, rung="fused AdamW", fused=True)
    larger = [
        dataclasses.replace(fused, rung=f"batch {size}", batch_size=size)
        for size in batch_sizes[1:]
    ]
    return [today, no_sync, benchmark, fused, *larger]


def create_batches(
    count: int, batch_size: int, image_size: int, device: torch.device
) -> list[Batch]:
    """Random uint8 images and labels already on the device, so that only training (with
    the normalisation on the device, as the loader's batches get it) is timed."""
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randint(0, 256, (batch_size, 3, image_size, image_size), generator=generator)
            .to(torch.uint8)
            .to(device),
            torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator).to(device),
        )
        for _ in range(count)
    ]


def feed(
    batches: list[Batch], steps: int, device: torch.device, host_sync: bool
) -> Iterator[Batch]:
    """``steps`` batches cycled from ``batches``; with ``host_sync``, the host first waits
    for the device before each, as a step that reads from or copies to it would make it."""
    for batch in itertools.islice(itertools.cycle(batches), steps):
        if host_sync and device.type == "cuda":
            torch.cuda.synchronize(device)
        yield batch


def measure(
    regime: str, setting: Setting, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Train ``args.warmup`` then ``args.steps`` steps of ``regime`` under ``setting``."""
    name, blocks = REGIMES[regime]
    torch.backends.cudnn.benchmark = setting.cudnn_benchmark
    config = TrainConfig(
        data="synthetic",
        regime=name,
        trainable_blocks=blocks,
        batch_size=setting.batch_size,
        image_size=args.image_size,
    )
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, config.trainable_blocks)
    trainable, _ = count_parameters(model)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = create_optimizer(model, config, fused=setting.fused)
    trained = compile_model(model, enabled=setting.compile, backend=args.compile_backend)
    kwargs = {
        "loss_fn": create_loss(config, NUM_CLASSES),
        "scheduler": create_scheduler(optimizer, config, args.warmup + args.steps),
        "device": device,
        "amp_dtype": None if args.no_amp else torch.bfloat16,
        "channels_last": True,
    }
    batches = create_batches(DISTINCT_BATCHES, setting.batch_size, args.image_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    train_one_epoch(
        trained, feed(batches, args.warmup, device, setting.host_sync), optimizer, **kwargs
    )
    warmup_seconds = time.perf_counter() - started
    timed = feed(batches, args.steps, device, setting.host_sync)
    metrics = train_one_epoch(trained, timed, optimizer, **kwargs)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    row = {
        "regime": regime,
        **dataclasses.asdict(setting),
        "trainable": trainable,
        "images_per_second": metrics["images_per_second"],
        "ms_per_step": 1000 * metrics["seconds"] / args.steps,
        "warmup_seconds": warmup_seconds,
        "peak_gib": peak,
        "status": "ok",
    }
    if isinstance(trained, CompiledModule) and trained.compiled is False:
        row["status"] = f"compile failed, ran eagerly: {trained.failure}"
    return row


def measure_or_skip(
    regime: str, setting: Setting, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """:func:`measure`, or a row that says why there is no figure (out of memory)."""
    try:
        return measure(regime, setting, args, device)
    except torch.OutOfMemoryError:
        return skipped_row(regime, setting, "out of memory")
    finally:
        if setting.compile:
            torch.compiler.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def skipped_row(regime: str, setting: Setting, why: str) -> dict[str, Any]:
    """A ladder row without figures."""
    return {
        "regime": regime,
        **dataclasses.asdict(setting),
        "images_per_second": None,
        "status": why,
    }


def measure_ladders(
    args: argparse.Namespace, device: torch.device, started: float, figures: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every regime's ladder; the compiled rungs last, as the time budget allows.

    Each row goes into ``figures["rows"]`` and the JSON file as it is measured,
    so a run stopped from outside keeps what it measured.
    """
    ladder = create_ladder(args.batch_sizes)
    rows = figures["rows"]

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        print_row(rows, row)
        write_figures(figures, args.json)

    for regime in args.regimes:
        for setting in ladder:
            add(measure_or_skip(regime, setting, args, device))
    if args.no_compile:
        return rows
    for regime in args.regimes:
        measured = [r for r in rows if r["regime"] == regime and r["images_per_second"]]
        if not measured:
            continue
        best = max(measured, key=lambda r: r["images_per_second"])
        setting = dataclasses.replace(
            ladder[-1], rung="torch.compile", batch_size=best["batch_size"], compile=True
        )
        elapsed = time.perf_counter() - started
        if args.budget_s is not None and elapsed > args.budget_s:
            add(skipped_row(regime, setting, f"time budget spent ({elapsed:.0f} s)"))
        else:
            add(measure_or_skip(regime, setting, args, device))
    return rows


def write_figures(figures: dict[str, Any], path: Path | None) -> None:
    """``figures`` as JSON at ``path`` (through a temporary name), if a path is given."""
    if path is None:
        return
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(figures, indent=2))
    partial.replace(path)


def print_row(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """One line of the ladder table, with the speed-up over today and over the rung before."""
    same = [r for r in rows if r["regime"] == row["regime"] and r is not row]
    rate = row["images_per_second"]
    if rate is None:
        print(f"{row['regime']:<12}{row['rung']:<18}{row['batch_size']:>6}  {row['status']}")
        return
    today = next((r["images_per_second"] for r in same if r["rung"] == "today"), rate)
    before = next((r["images_per_second"] for r in reversed(same) if r["images_per_second"]), rate)
    note = "" if row["status"] == "ok" else f"  {row['status']}"
    print(
        f"{row['regime']:<12}{row['rung']:<18}{row['batch_size']:>6}{rate:>11.1f}"
        f"{row['ms_per_step']:>9.1f}{rate / today:>8.2f}x{rate / before:>8.2f}x"
        f"{row['peak_gib']:>9.2f}{row['warmup_seconds']:>9.1f}{note}"
    )


def measure_cached_frozen(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """The frozen regime on cached features: computing them once, then the head's epochs.

    Computing is the backbone's forward pass in eval mode (as ``cars.learn.features``
    runs it), on synthetic batches of the first batch size; the head then trains
    on pooled features already on the device, as a cached trial does.
    """
    torch.backends.cudnn.benchmark = True
    batch_size = args.batch_sizes[0]
    amp_dtype = None if args.no_amp else torch.bfloat16
    torch.manual_seed(0)
    model = build_model("frozen", NUM_CLASSES).to(device, memory_format=torch.channels_last).eval()
    batches = create_batches(DISTINCT_BATCHES, batch_size, args.image_size, device)
    normalizer = create_input_normalizer(model)
    with torch.inference_mode(), autocast(device, amp_dtype):
        for images, _ in feed(batches, args.warmup, device, host_sync=False):
            model.forward_head(
                model.forward_features(normalizer(images, device, True)), pre_logits=True
            )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for images, _ in feed(batches, args.steps, device, host_sync=False):
            inputs = normalizer(images, device, True)
            pooled = model.forward_head(model.forward_features(inputs), pre_logits=True)
        pooled.float().cpu()  # waits for the device, as storing the features would
        compute_rate = args.steps * batch_size / (time.perf_counter() - started)
    config = TrainConfig(data="synthetic", regime="frozen", batch_size=batch_size)
    head = feature_head(model)
    optimizer = create_optimizer(model, config)
    features = [
        (torch.randn(batch_size, model.num_features, device=device), labels)
        for _, labels in batches
    ]
    kwargs = {
        "loss_fn": create_loss(config, NUM_CLASSES),
        "scheduler": create_scheduler(optimizer, config, args.warmup + args.steps),
        "device": device,
        "amp_dtype": amp_dtype,
    }
    train_one_epoch(head, feed(features, args.warmup, device, False), optimizer, **kwargs)
    head_rate = train_one_epoch(
        head, feed(features, args.steps, device, False), optimizer, **kwargs
    )
    rates = {"computing_features": compute_rate, "head_on_features": head_rate["images_per_second"]}
    print("\nfrozen on cached features (the backbone once, then the head every epoch)")
    print(f"  computing features : {rates['computing_features']:>12.1f} images/s")
    print(f"  head on features   : {rates['head_on_features']:>12.1f} images/s")
    return rates


def write_loader_images(count: int, folder: Path) -> list[bytes]:
    """``count`` synthetic car photos of about Stanford Cars' size (~600 x 400), as JPEG bytes."""
    cars = SyntheticCars(2, train_per_class=-(-count // 2), test_per_class=0, widths=(560, 660))
    source = write_synthetic_cars(folder, cars)
    return [path.read_bytes() for path in sorted((source / "cars_train").rglob("*.jpg"))][:count]


def measure_loader(args: argparse.Namespace) -> dict[str, float]:
    """The loader's images/s per CPU core at ``--image-size``: decode + transform to uint8.

    One thread, no DataLoader (its collation and inter-process copies come on top);
    the device step (normalisation) is not the loader's and is in the regime figures.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-loader-") as tmp:
            images = write_loader_images(args.loader_images, Path(tmp))
        rates = {}
        for augment in LOADER_POLICIES:
            transform = create_transform_for(augment, args.image_size, is_training=True)
            decode_input(images[0], transform)  # first call pays imports and allocations
            start = time.perf_counter()
            for data in images:
                decode_input(data, transform)
            rates[augment] = len(images) / (time.perf_counter() - start)
        return rates
    finally:
        torch.set_num_threads(threads)


def print_loader_bound(loader: dict[str, float], regimes: dict[str, float], cores: int) -> None:
    """Per regime and policy: the cores that keep the device fed, and whether ``cores`` do."""
    rates = ", ".join(f"{augment} {rate:.0f}" for augment, rate in loader.items())
    print(f"\nloader      : images/s per CPU core (decode + transform to uint8): {rates}")
    print(f"{'regime':<12}{'policy':<8}{'GPU img/s':>12}{'cores needed':>14}  with {cores} cores")
    for label, gpu_rate in regimes.items():
        for augment, rate in loader.items():
            needed = gpu_rate / rate
            verdict = "loader-bound" if needed > cores else "device-bound"
            print(f"{label:<12}{augment:<8}{gpu_rate:>12.1f}{needed:>14.1f}  {verdict}")


def describe_device(device: torch.device) -> str:
    """The device's name, as the tables print it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thr)"


def best_rates(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Each regime's fastest measured rate."""
    best: dict[str, float] = {}
    for row in rows:
        rate = row.get("images_per_second")
        if rate:
            best[row["regime"]] = max(rate, best.get(row["regime"], 0.0))
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every regime's ladder, the cached features and the loader; print the tables."""
    started = time.perf_counter()
    args = parse_args(argv)
    device = torch.device(args.device)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    print(f"device      : {describe_device(device)}")
    print(f"torch       : {torch.__version__} (timm {timm.__version__})")
    print(
        f"input       : {args.image_size}px, {'fp32' if args.no_amp else 'bf16 autocast'}, "
        f"channels_last, {args.steps} timed steps after {args.warmup}"
    )
    print(
        f"\n{'regime':<12}{'rung':<18}{'batch':>6}{'images/s':>11}{'ms/step':>9}"
        f"{'x today':>9}{'x last':>9}{'peak GiB':>9}{'warmup s':>9}"
    )
    figures: dict[str, Any] = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "image_size": args.image_size,
        "batch_sizes": args.batch_sizes,
        "steps": args.steps,
        "warmup": args.warmup,
        "amp": not args.no_amp,
        "rows": [],
        "complete": False,
    }
    rows = measure_ladders(args, device, started, figures)
    figures["cached_frozen"] = measure_cached_frozen(args, device)
    if args.loader_images > 0:
        figures["loader_per_core"] = measure_loader(args)
        figures["loader_cores"] = args.loader_cores
        print_loader_bound(figures["loader_per_core"], best_rates(rows), args.loader_cores)
    figures["seconds"] = time.perf_counter() - started
    figures["complete"] = True
    write_figures(figures, args.json)
    return figures


if __name__ == "__main__":
    main()
