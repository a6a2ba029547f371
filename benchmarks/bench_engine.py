"""Training images per second of ``cars.learn.engine.train_one_epoch`` against a bare PyTorch loop.

Both run the same model, optimizer, batches and input size; the ratio is the
overhead of the engine (metrics, scheduler, device moves). Run:
``python benchmarks/bench_engine.py [--image-size 64] [--batch-size 32] [--steps 5]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn

from cars.config import TrainConfig
from cars.learn.engine import train_one_epoch
from cars.learn.model import build_model, count_parameters
from cars.learn.optim import create_loss, create_optimizer, create_scheduler

NUM_CLASSES = 196


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--regime", default="finetune", choices=("scratch", "frozen", "finetune"))
    parser.add_argument("--trainable-blocks", type=int, default=None)
    return parser.parse_args(argv)


def create_batches(
    count: int, batch_size: int, image_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random images and labels, made once so that neither loop pays for data."""
    return [
        (
            torch.randn(batch_size, 3, image_size, image_size),
            torch.randint(0, NUM_CLASSES, (batch_size,)),
        )
        for _ in range(count)
    ]


def run_bare_loop(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
) -> float:
    """Images per second of forward, loss, backward, step and nothing else."""
    model.train()
    started = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
    return sum(len(labels) for _, labels in batches) / (time.perf_counter() - started)


def run_engine(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> float:
    """Images per second of ``train_one_epoch``, timed from outside."""
    started = time.perf_counter()
    train_one_epoch(model, batches, optimizer, loss_fn=loss_fn, scheduler=scheduler, device="cpu")
    return sum(len(labels) for _, labels in batches) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    """Warm up, time both loops on the same model, print both and their ratio."""
    args = parse_args(argv)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    config = TrainConfig(
        data="synthetic",
        regime=args.regime,
        trainable_blocks=args.trainable_blocks,
        batch_size=args.batch_size,
        image_size=args.image_size,
    )
    model = build_model(config.regime, NUM_CLASSES, config.trainable_blocks)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, steps_per_epoch=args.warmup + args.steps)
    loss_fn = create_loss(config, NUM_CLASSES)
    warmup = create_batches(args.warmup, args.batch_size, args.image_size)
    timed = create_batches(args.steps, args.batch_size, args.image_size)

    run_bare_loop(model, warmup, optimizer, loss_fn)
    bare = run_bare_loop(model, timed, optimizer, loss_fn)
    engine = run_engine(model, timed, optimizer, loss_fn, scheduler)

    trainable, total = count_parameters(model)
    print(
        f"legacy_xception {config.regime} (trainable_blocks={config.trainable_blocks}, "
        f"{trainable:,} of {total:,} parameters), batch {args.batch_size}, "
        f"{args.image_size}px, {args.steps} timed steps, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"bare PyTorch loop : {bare:8.1f} images/s")
    print(f"train_one_epoch   : {engine:8.1f} images/s")
    print(f"engine / bare     : {engine / bare:8.3f}")


if __name__ == "__main__":
    main()
