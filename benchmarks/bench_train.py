"""Training images per second of a 1-worker Ray Train run against the engine alone.

Both train the same model on the same prepared set, batch, input size and
number of CPU threads for the same epochs. The engine alone is
``cars.learn.engine.train_one_epoch`` and ``evaluate`` on a plain DataLoader; the Ray
run is ``cars.cluster.train.create_trainer``'s ``TorchTrainer`` with one worker, which
adds DDP wrapping, per-epoch reports and checkpoints, and the start and end of a
worker group (what every multi-worker run pays; one-worker runs of ``jobs/train.py``
train in a Ray task instead).

    python benchmarks/bench_train.py                       # a synthetic 8-class set
    python benchmarks/bench_train.py --data SET [--image-size 64] [--epochs 3]

It prints, for each side, the training images per second of the epochs after
the first (warm) and the wall time of the whole run, and their ratios.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cars.cluster.runtime import init_ray
from cars.cluster.train import create_trainer
from cars.cluster.worker import create_datasets
from cars.config import TrainConfig
from cars.data import (
    SyntheticCars,
    create_input_normalizer,
    create_random_erasing,
    prepare_synthetic,
    read_dataset_info,
)
from cars.learn.engine import evaluate, train_one_epoch
from cars.learn.model import build_model
from cars.learn.optim import create_loss, create_optimizer, create_scheduler
from cars.paths import resolve_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a prepared set (default: generate a synthetic one)")
    parser.add_argument("--regime", default="finetune", choices=("scratch", "frozen", "finetune"))
    parser.add_argument("--trainable-blocks", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="at least 2: the first is warm-up")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of both sides")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up and not counted")
    return args


def run_engine(config: TrainConfig) -> tuple[list[float], float]:
    """Train ``config`` with the engine alone: images/s of each epoch, and the wall time."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    info = read_dataset_info(config.data)
    model = build_model(config.regime, info.num_classes, config.trainable_blocks)
    model = model.to(memory_format=torch.channels_last)  # as the Ray Train workers run it
    train_set, val_set = create_datasets(config)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, len(train_loader))
    loss_fn = create_loss(config, info.num_classes)
    # As the Ray Train loop: the policy's random erasing runs on the training batches.
    erasing = create_random_erasing(config.augment, "cpu")
    train_inputs = create_input_normalizer(model, erasing=erasing)
    rates = []
    for _ in range(config.epochs):
        train = train_one_epoch(
            model,
            train_loader,
            optimizer,
            loss_fn=loss_fn,
            scheduler=scheduler,
            device="cpu",
            channels_last=True,
            normalizer=train_inputs,
        )
        evaluate(model, val_loader, device="cpu", channels_last=True)
        rates.append(train["images_per_second"])
    return rates, time.perf_counter() - started


def run_ray_train(config: TrainConfig, storage: str) -> tuple[list[float], float]:
    """Train ``config`` as a 1-worker Ray Train run: images/s of each epoch, and the wall time."""
    started = time.perf_counter()
    result = create_trainer(config, storage_path=storage, name="bench-train").fit()
    wall = time.perf_counter() - started
    if result.error is not None:
        raise SystemExit(f"the Ray Train run failed: {result.error}")
    return result.metrics_dataframe.sort_values("epoch")["images_per_second"].tolist(), wall


def _steady(rates: list[float]) -> float:
    return statistics.median(rates[1:])


def main(argv: list[str] | None = None) -> None:
    """Time both sides on the same set and configuration; print both and their ratios."""
    args = parse_args(argv)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        data = resolve_path(args.data) if args.data else str(Path(scratch) / "set")
        if not args.data:
            prepare_synthetic(
                data, SyntheticCars(8, train_per_class=32, test_per_class=4), progress=False
            )
        config = TrainConfig(
            data=data,
            regime=args.regime,
            trainable_blocks=args.trainable_blocks,
            epochs=args.epochs,
            batch_size=args.batch_size,
            image_size=args.image_size,
            num_workers=1,
            cpus_per_worker=float(args.threads),
        )
        images = read_dataset_info(data).counts["train"]
        engine_rates, engine_wall = run_engine(config)
        init_ray(num_cpus=args.threads)
        ray_rates, ray_wall = run_ray_train(config, str(Path(scratch) / "runs"))

    print(
        f"legacy_xception {config.regime} (trainable_blocks={config.trainable_blocks}), "
        f"batch {config.batch_size}, {config.image_size}px, {config.epochs} epochs of "
        f"{images} training images, {args.threads} CPU threads, torch {torch.__version__}"
    )
    print("                     train images/s (epochs 2+)   wall time of the run")
    print(f"engine alone       : {_steady(engine_rates):10.1f} {engine_wall:25.1f} s")
    print(f"1-worker Ray Train : {_steady(ray_rates):10.1f} {ray_wall:25.1f} s")
    print(
        f"Ray Train / engine : {_steady(ray_rates) / _steady(engine_rates):10.3f} "
        f"{ray_wall / engine_wall:25.3f}"
    )


if __name__ == "__main__":
    main()
