"""Training images per second on one GPU, per regime, with the project's own training code.

Synthetic tensors at 299 px, bf16 autocast and channels_last, through
``build_model`` / ``create_optimizer`` / ``train_one_epoch``; optionally
``torch.compile``. Then the frozen regime on cached features (``cars.learn.features``):
the images/s of computing the pooled features once, and of training the head on
them every epoch. Run on a GPU machine: ``python benchmarks/bench_gpu.py
[--batch-size 64] [--compile]``; a flow check on a CPU: ``python
benchmarks/bench_gpu.py --device cpu --steps 2 --warmup 1 --image-size 64``.

A loader section then times the loader's CPU cost per core at the same input
size (decode + the ``basic`` and ``strong`` transforms to uint8, on ~600 x 400
JPEGs) and says, per regime, how many cores keep the GPU fed and whether
``--loader-cores`` would leave it loader-bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import timm
import torch

from cars.config import TrainConfig
from cars.data import SyntheticCars, create_transform_for, write_synthetic_cars
from cars.data.decoding import decode_input
from cars.data.normalize import create_input_normalizer
from cars.learn.engine import train_one_epoch
from cars.learn.features import feature_head
from cars.learn.model import build_model, count_parameters
from cars.learn.optim import create_loss, create_optimizer, create_scheduler

NUM_CLASSES = 196
REGIMES = (("scratch", None), ("frozen", None), ("finetune", 1))
LOADER_POLICIES = ("basic", "strong")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per regime")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
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
    return parser.parse_args(argv)


def create_batches(
    count: int, batch_size: int, image_size: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random uint8 images and labels already on the device, so only training (with the
    normalisation on the device, as the loader's batches get it) is timed."""
    return [
        (
            torch.randint(0, 256, (batch_size, 3, image_size, image_size), device=device).to(
                torch.uint8
            ),
            torch.randint(0, NUM_CLASSES, (batch_size,), device=device),
        )
        for _ in range(count)
    ]


def measure_regime(
    regime: str, trainable_blocks: int | None, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Train ``args.warmup`` then ``args.steps`` steps of one regime; its throughput and memory."""
    config = TrainConfig(
        data="synthetic",
        regime=regime,
        trainable_blocks=trainable_blocks,
        batch_size=args.batch_size,
        image_size=args.image_size,
        compile=args.compile,
    )
    model = build_model(regime, NUM_CLASSES, config.trainable_blocks)
    trainable, _ = count_parameters(model)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, steps_per_epoch=args.warmup + args.steps)
    if args.compile:
        model = torch.compile(model)
    kwargs = {
        "loss_fn": create_loss(config, NUM_CLASSES),
        "scheduler": scheduler,
        "device": device,
        "amp_dtype": None if args.no_amp else torch.bfloat16,
        "channels_last": True,
    }
    batches = create_batches(args.warmup + args.steps, args.batch_size, args.image_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_one_epoch(model, batches[: args.warmup], optimizer, **kwargs)
    metrics = train_one_epoch(model, batches[args.warmup :], optimizer, **kwargs)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {
        "trainable": trainable,
        "images_per_second": metrics["images_per_second"],
        "ms_per_step": 1000 * metrics["seconds"] / args.steps,
        "peak_gib": peak,
    }


def measure_cached_frozen(args: argparse.Namespace, device: torch.device) -> None:
    """The frozen regime on cached features: computing them once, then the head's epochs.

    Computing is the backbone's forward pass in eval mode (as ``cars.learn.features``
    runs it), on the same synthetic batches as the regimes; the head then
    trains on pooled features already on the device, as a cached trial does.
    """
    torch.manual_seed(0)
    model = build_model("frozen", NUM_CLASSES).to(device, memory_format=torch.channels_last).eval()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_amp)
    batches = create_batches(args.warmup + args.steps, args.batch_size, args.image_size, device)
    normalizer = create_input_normalizer(model)
    with torch.inference_mode(), amp:
        for images, _ in batches[: args.warmup]:
            inputs = normalizer(images, device, True)
            model.forward_head(model.forward_features(inputs), pre_logits=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for images, _ in batches[args.warmup :]:
            inputs = normalizer(images, device, True)
            pooled = model.forward_head(model.forward_features(inputs), pre_logits=True)
        pooled.float().cpu()  # waits for the device, as storing the features would
        compute_rate = args.steps * args.batch_size / (time.perf_counter() - started)
    config = TrainConfig(data="synthetic", regime="frozen", batch_size=args.batch_size)
    head = feature_head(model)
    optimizer = create_optimizer(model, config)
    features = [
        (torch.randn(args.batch_size, model.num_features, device=device), labels)
        for _, labels in batches
    ]
    kwargs = {
        "loss_fn": create_loss(config, NUM_CLASSES),
        "scheduler": create_scheduler(optimizer, config, steps_per_epoch=len(features)),
        "device": device,
        "amp_dtype": None if args.no_amp else torch.bfloat16,
    }
    train_one_epoch(head, features[: args.warmup], optimizer, **kwargs)
    head_rate = train_one_epoch(head, features[args.warmup :], optimizer, **kwargs)
    print("frozen on cached features (the backbone once, then the head every epoch)")
    print(f"  computing features : {compute_rate:>12.1f} images/s")
    print(f"  head on features   : {head_rate['images_per_second']:>12.1f} images/s")


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


def main(argv: list[str] | None = None) -> None:
    """Measure every regime and print one table."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its kernels
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thr)"
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    print(f"device      : {name}")
    print(f"torch       : {torch.__version__} (timm {timm.__version__})")
    print(
        f"batch size  : {args.batch_size}, {args.image_size}px, "
        f"{'fp32' if args.no_amp else 'bf16 autocast'}, channels_last, "
        f"compile={'on' if args.compile else 'off'}, {args.steps} timed steps"
    )
    print(f"{'regime':<12}{'trainable':>14}{'images/s':>12}{'ms/step':>10}{'peak GiB':>10}")
    regime_rates = {}
    for regime, blocks in REGIMES:
        row = measure_regime(regime, blocks, args, device)
        label = regime if blocks is None else f"{regime}-{blocks}"
        print(
            f"{label:<12}{row['trainable']:>14,}{row['images_per_second']:>12.1f}"
            f"{row['ms_per_step']:>10.1f}{row['peak_gib']:>10.2f}"
        )
        regime_rates[label] = row["images_per_second"]
    measure_cached_frozen(args, device)
    if args.loader_images > 0:
        print_loader_bound(measure_loader(args), regime_rates, args.loader_cores)


if __name__ == "__main__":
    main()
