"""Seconds that precise BatchNorm statistics add to an epoch, on the demo and at 299 px.

Each case times the loop's own steps on the demo's target set (generated, or
reused from ``data/demo``): ``cars.learn.engine.train_one_epoch`` over training
batches, then ``cars.learn.engine.update_batchnorm_statistics`` over the batches the
run's ``precise_bn_samples`` asks for, both on the real training loader.

- ``demo``: the demo preset (64 px, its batch); a whole epoch and the whole recompute.
- ``299px``: ``--batches`` timed batches of each after a warm-up batch, and the
  per-epoch figure extrapolated to Stanford Cars' training split
  (``--epoch-images``, 90 % of its 8,144 training images).

    python benchmarks/bench_precise_bn.py [--cases demo 299px] [--regimes scratch finetune]

``frozen`` trials pay nothing: none of their BatchNorm layers trains.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader

from cars.cluster.worker import create_datasets
from cars.config import PRECISE_BN_SAMPLES, TrainConfig
from cars.data import create_input_normalizer, create_random_erasing, read_dataset_info
from cars.demo import prepare_demo_data
from cars.learn.engine import train_one_epoch, update_batchnorm_statistics
from cars.learn.model import build_model
from cars.learn.optim import create_loss, create_optimizer, create_scheduler
from cars.sweep_config import PRESETS

STANFORD_TRAIN_IMAGES = 7329  # 8,144 official training images less the 10 % held out


@dataclass(frozen=True)
class Timing:
    """One case and regime: seconds per image of training and of the recompute."""

    case: str
    regime: str
    train_seconds_per_image: float
    bn_seconds_per_image: float
    epoch_images: int
    bn_images: int
    measured: bool  # the whole epoch ran, rather than a few batches

    @property
    def epoch_seconds(self) -> float:
        """Seconds of one epoch's training."""
        return self.train_seconds_per_image * self.epoch_images

    @property
    def bn_seconds(self) -> float:
        """Seconds of one recompute."""
        return self.bn_seconds_per_image * self.bn_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=("demo", "299px"), default=["demo", "299px"])
    parser.add_argument(
        "--regimes", nargs="+", choices=("scratch", "finetune"), default=["scratch", "finetune"]
    )
    parser.add_argument("--trainable-blocks", type=int, default=2, help="of finetune")
    parser.add_argument("--precise-bn-samples", type=int, default=PRECISE_BN_SAMPLES)
    parser.add_argument("--batch-size-299", type=int, default=16, help="global batch at 299 px")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per side at 299 px")
    parser.add_argument("--repeats", type=int, default=3, help="the fastest of these counts")
    parser.add_argument("--epoch-images", type=int, default=STANFORD_TRAIN_IMAGES)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    return parser.parse_args(argv)


def _loader(config: TrainConfig) -> DataLoader:
    """The training loader as a 1-worker run builds it."""
    train_set, _ = create_datasets(config)
    return DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )


def time_case(case: str, config: TrainConfig, *, batches: int | None, repeats: int) -> Timing:
    """Time training and the recompute of ``config``, the fastest of ``repeats`` of each.

    With ``batches=None`` a whole epoch and the whole recompute run; otherwise
    ``batches`` of each, and the figures per image extrapolate to an epoch of
    ``--epoch-images`` (set by the caller on the returned timing). The fastest
    repeat is the one other processes on the machine disturbed least.
    """
    torch.manual_seed(config.seed)
    info = read_dataset_info(config.data)
    model = build_model(config.regime, info.num_classes, config.trainable_blocks)
    model = model.to(memory_format=torch.channels_last)  # as the Ray Train workers run it
    loader = _loader(config)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, len(loader))
    # As the Ray Train loop: the policy's random erasing on training and precise-BN batches.
    erasing = create_random_erasing(config.augment, "cpu")
    common = {
        "device": "cpu",
        "channels_last": True,
        "normalizer": create_input_normalizer(model, erasing=erasing),
    }

    def train(batch_count: int | None) -> dict[str, float]:
        source = loader if batch_count is None else itertools.islice(loader, batch_count)
        return train_one_epoch(
            model,
            source,
            optimizer,
            loss_fn=create_loss(config, info.num_classes),
            scheduler=scheduler,
            **common,
        )

    # One untimed batch of each first, so that neither side pays for oneDNN's first calls.
    train(1)
    update_batchnorm_statistics(model, loader, num_batches=1, **common)
    bn_batches = config.precise_bn_batches(len(loader)) if batches is None else batches
    train_rates, bn_rates = [], []
    for _ in range(repeats):
        trained = train(batches)
        recomputed = update_batchnorm_statistics(model, loader, num_batches=bn_batches, **common)
        train_rates.append(trained["seconds"] / trained["images"])
        bn_rates.append(recomputed["seconds"] / recomputed["images"])
    return Timing(
        case=case,
        regime=config.regime,
        train_seconds_per_image=min(train_rates),
        bn_seconds_per_image=min(bn_rates),
        epoch_images=trained["images"],
        bn_images=recomputed["images"],
        measured=batches is None,
    )


def main(argv: list[str] | None = None) -> None:
    """Time each case and regime; print the recompute beside the epoch."""
    args = parse_args(argv)
    logging.getLogger("cars.learn.model").setLevel(logging.ERROR)  # random weights suit a timing
    torch.set_num_threads(args.threads)
    demo = PRESETS["demo"]
    data, _ = prepare_demo_data(demo["demo"], seed=0)
    timings = []
    for case, regime in itertools.product(args.cases, args.regimes):
        values = {
            "data": data,
            "regime": regime,
            "trainable_blocks": args.trainable_blocks,
            "augment": "basic",
            "precise_bn_samples": args.precise_bn_samples,
        }
        if case == "demo":
            config = TrainConfig(
                **values, image_size=demo["image_size"], batch_size=demo["batch_size"]
            )
            timings.append(time_case(case, config, batches=None, repeats=args.repeats))
        else:
            config = TrainConfig(**values, image_size=299, batch_size=args.batch_size_299)
            timing = time_case(case, config, batches=args.batches, repeats=args.repeats)
            epoch_images = args.epoch_images
            bn_images = min(args.precise_bn_samples, epoch_images)
            timings.append(replace(timing, epoch_images=epoch_images, bn_images=bn_images))
        print(f"timed {case} {regime}", flush=True)

    print(
        f"\nlegacy_xception, precise_bn_samples={args.precise_bn_samples}, finetune trains "
        f"{args.trainable_blocks} blocks, {args.threads} CPU threads, torch {torch.__version__}"
    )
    print(
        "case   regime     ms/img train  ms/img BN   epoch imgs  BN imgs   epoch s   BN s  BN/epoch"
    )
    for t in timings:
        print(
            f"{t.case:<6} {t.regime:<9} {1e3 * t.train_seconds_per_image:12.1f} "
            f"{1e3 * t.bn_seconds_per_image:10.1f} {t.epoch_images:12d} {t.bn_images:8d} "
            f"{t.epoch_seconds:9.1f} {t.bn_seconds:6.1f} {t.bn_seconds / t.epoch_seconds:8.1%}"
            + ("" if t.measured else "  (extrapolated from a few batches)")
        )


if __name__ == "__main__":
    main()
