"""Wall time of a frozen trial with and without the feature cache, same data, equal epochs.

Each case is a whole frozen trial as a one-worker run does it, without Ray:
build the model, the datasets and the loaders, then ``--epochs`` epochs of
``cars.learn.engine.train_one_epoch`` and ``cars.learn.engine.evaluate``.

- ``images``: the backbone runs on every image of every epoch (``--no-feature-cache``).
- ``features, computed``: the first trial of a sweep: it computes the train and
  val features (``cars.learn.features``), stores them, and trains the head on them.
- ``features, read``: every later trial with the same key: it reads them.

Both feature cases must reach the validation accuracy of ``images`` (same seed).

    python benchmarks/bench_feature_cache.py [--device cpu|cuda] [--image-size 299] [--epochs 10]

Without ``--data`` it runs on a synthetic set, by default of the demo's size
(``--classes 8 --train-per-class 32``, generated once into ``data/bench``); pass
a prepared set (e.g. Stanford Cars) with ``--data``.
It imports no Ray, so it runs where only torch and timm are installed.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cars.config import TrainConfig
from cars.data import (
    CarsDataset,
    SyntheticCars,
    create_transform_for,
    prepare_synthetic,
    read_dataset_info,
)
from cars.learn.engine import evaluate, train_one_epoch
from cars.learn.features import feature_head, load_or_compute_features
from cars.learn.model import build_model
from cars.learn.optim import create_loss
from cars.learn.placement import Worker
from cars.learn.training_state import create_training_state
from cars.paths import PROJECT_ROOT


@dataclass(frozen=True)
class Trial:
    """One frozen trial's wall time and result."""

    case: str
    seconds: float
    feature_seconds: float
    val_acc: float
    val_loss: float


def synthetic_data(classes: int, per_class: int) -> str:
    """A synthetic set of ``classes`` x ``per_class`` training images, made once."""
    out = PROJECT_ROOT / "data" / "bench" / f"synthetic-{classes}x{per_class}"
    if not (out / "dataset.json").exists():
        prepare_synthetic(out, SyntheticCars(classes, train_per_class=per_class, test_per_class=2))
    return str(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data", help="a prepared data set (default: a synthetic one)")
    parser.add_argument("--classes", type=int, default=8, help="of the synthetic set")
    parser.add_argument("--train-per-class", type=int, default=32, help="of the synthetic set")
    parser.add_argument("--weights", help="backbone weights (default: random, as a timing allows)")
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader processes")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    return parser.parse_args(argv)


def create_datasets(config: TrainConfig) -> tuple[CarsDataset, CarsDataset]:
    """The training and validation sets of a frozen run without augmentation.

    As ``cars.cluster.worker.create_datasets`` builds them, without importing Ray.
    """
    return tuple(
        CarsDataset(
            config.data,
            split,
            create_transform_for("none", config.image_size, is_training=split == "train"),
            bbox_crop=config.bbox_crop,
            bbox_margin=config.bbox_margin,
        )
        for split in ("train", "val")
    )


def _loaders(config: TrainConfig, train_set: Dataset, val_set: Dataset) -> tuple[DataLoader, ...]:
    """Training and validation loaders as a one-worker run builds them."""
    common = {
        "num_workers": config.loader_workers or 0,
        "pin_memory": config.use_gpu,
        "persistent_workers": bool(config.loader_workers),
    }
    train = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        **common,
    )
    return train, DataLoader(val_set, batch_size=config.batch_size, **common)


def run_trial(case: str, config: TrainConfig, device: torch.device, store: str | None) -> Trial:
    """One frozen trial from model building to its last validation; on features if ``store``."""
    started = time.perf_counter()
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    torch.manual_seed(config.seed)
    info = read_dataset_info(config.data)
    model = build_model("frozen", info.num_classes, weights=config.weights)
    model = model.to(device, memory_format=torch.channels_last)
    train_set, val_set = create_datasets(config)
    trained: nn.Module = model
    feature_seconds = 0.0
    if store is not None:
        cache = load_or_compute_features(
            model,
            {"train": train_set, "val": val_set},
            store=store,
            batch_size=config.batch_size,
            worker=Worker(device, loader_workers=config.loader_workers or 0, amp_dtype=amp_dtype),
        )
        feature_seconds = cache.seconds
        train_set, val_set = cache.splits["train"].to_dataset(), cache.splits["val"].to_dataset()
        trained = feature_head(model)
        config = config.replace(loader_workers=0)
    train_loader, val_loader = _loaders(config, train_set, val_set)
    state = create_training_state(model, config, len(train_loader))
    common = {"device": device, "amp_dtype": amp_dtype, "channels_last": store is None}
    for _ in range(config.epochs):
        train_one_epoch(
            trained,
            train_loader,
            state.optimizer,
            loss_fn=create_loss(config, info.num_classes),
            scheduler=state.scheduler,
            **common,
        )
        val = evaluate(trained, val_loader, **common)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Trial(case, time.perf_counter() - started, feature_seconds, val["acc"], val["loss"])


def main(argv: list[str] | None = None) -> None:
    """Run the three cases on the same data and print their times and ratios."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    data = args.data or synthetic_data(args.classes, args.train_per_class)
    info = read_dataset_info(data)
    config = TrainConfig(
        data=data,
        regime="frozen",
        weights=args.weights,
        augment="none",
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        use_gpu=device.type == "cuda",
        loader_workers=args.loader_workers,
        lr=1e-2,
    )
    print(f"data        : {data} ({info.counts['train']} train, {info.counts['val']} val images)")
    print(
        f"device      : {device} ({torch.get_num_threads()} threads), {args.image_size}px, "
        f"batch {args.batch_size}, {args.epochs} epochs, {args.loader_workers} loader workers"
    )
    with tempfile.TemporaryDirectory(prefix="cars-features-") as store:
        trials = [
            run_trial("images", config, device, None),
            run_trial("features, computed", config, device, store),
            run_trial("features, read", config, device, store),
        ]
    baseline = trials[0].seconds
    header = f"{'case':<20}{'seconds':>10}{'features s':>12}{'val acc':>10}{'val loss':>10}"
    print(f"{header}{'ratio':>8}")
    for trial in trials:
        print(
            f"{trial.case:<20}{trial.seconds:>10.1f}{trial.feature_seconds:>12.1f}"
            f"{trial.val_acc:>10.3f}{trial.val_loss:>10.4f}{baseline / trial.seconds:>7.1f}x"
        )


if __name__ == "__main__":
    main()
