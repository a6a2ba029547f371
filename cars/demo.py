"""The built-in demo: synthetic cars, and a source model that stands in for ImageNet.

ImageNet weights cannot be downloaded offline, so the demo pretrains a
``scratch`` network on a disjoint set of synthetic *source* classes and hands
its checkpoint to the ``frozen`` and ``finetune`` regimes, exactly as the full
study hands them timm's ImageNet weights. Both the data and the source model
are cached by what they depend on, so a second demo run starts sweeping at once.

Why transfer can help here, as it does from ImageNet to Stanford Cars: every
synthetic class, source or target, is a combination of the same parts (body
shape, windows, roof, spoiler, stripes, roof rack, headlights, wheels), and the
two tasks share no combination (see :mod:`cars.data.synthetic_classes`). A
network that learned to tell the source classes apart has learned to see those
parts, so a target class is a new arrangement of features it already computes;
a network trained from scratch must find them in the target images. The demo
paints every car a random colour (``usual_colour_share=0``), as a Stanford Cars
model comes in many colours: with each class in its usual paint, colour alone
told most target classes apart, and ``scratch`` learned it from five images as
readily as any transferred feature, so the comparison measured the classes'
colours rather than transfer.

The ``demo`` preset asks the study's question where it matters, transfer to a
small target set: 5 training images per target class (Stanford Cars has about
41), and 30 validation and 60 test images per class, so that the report's
paired comparisons rest on 480 test images. The source task is bigger and more
varied, 24 classes of 36 training images, and the source model trains for two
epochs without augmentation, which on a CPU reaches a better source model in
the time than more epochs of fewer images or augmented ones. Every image, source
and target, is cropped to its car's box (``bbox_crop``), as fine-grained car
classifiers often are: at 64 px a whole photo leaves the car a few dozen pixels
long among clutter, and two epochs on whole photos leave the source model at a
fraction of the accuracy it reaches on the boxes, with features that transfer
no better than what ``scratch`` learns from the target's 40 images. Each
regime gets one trial, trained without augmentation: in six epochs of five
steps a random resized crop leaves ``scratch`` near chance, so one draw of it
would decide the comparison by itself.

Where a model looks can only be measured where the car leaves room around it:
cropped to its box, a car fills its input, and pointing at the input's centre
always hits it. So the demo draws its photos wide (144-288 px) with the car
spanning 35-55 % of the width, anywhere in it (about the car's pixel size of
the generator's close-ups), and the report explains the whole test photos, at
the size where a car keeps the scale of its 64 px crop
(:mod:`cars.report.cam_view`): there the box covers about a fifth of the input,
the centre hits it about 60 % of the time, and ``act4`` is a 6 x 6 map.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import ray

from cars.cluster.resources import plan_trial_resources
from cars.cluster.train import run_training
from cars.config import ConfigError, TrainConfig
from cars.data import SyntheticCars, prepare_synthetic
from cars.data.synthetic import DEFAULT_WIDTHS
from cars.data.synthetic_car import USUAL_COLOUR_SHARE
from cars.data.synthetic_drawing import CAR_LENGTH_SHARE
from cars.paths import PROJECT_ROOT
from cars.runs import StoredRun, read_run
from cars.storage import join_path
from cars.sweep_config import DEMO_SOURCE_WEIGHTS, DemoSpec, SweepConfig

logger = logging.getLogger(__name__)

DEMO_DATA_DIR = PROJECT_ROOT / "data" / "demo"
PRETRAINED_DIR = "pretrained"


@dataclass(frozen=True)
class DemoInputs:
    """What the demo sweeps: the target data set and the source model's checkpoint."""

    data: str
    source_data: str
    weights: str | None


def _fingerprint(*parts: object) -> str:
    text = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def prepare_demo_data(spec: DemoSpec, seed: int, root: Path = DEMO_DATA_DIR) -> tuple[str, str]:
    """Generate and prepare the target and source sets, unless already there.

    Returns:
        The prepared target set and the prepared source set.
    """
    folder = root / f"synthetic-{_fingerprint(spec, seed)}"
    source_val_fraction = spec.val_fraction
    if spec.source_val_fraction is not None:
        source_val_fraction = spec.source_val_fraction
    usual_colour_share = USUAL_COLOUR_SHARE
    if spec.usual_colour_share is not None:
        usual_colour_share = spec.usual_colour_share
    target = SyntheticCars(
        spec.num_classes,
        spec.train_per_class,
        spec.test_per_class,
        seed=seed,
        task="target",
        widths=spec.photo_widths or DEFAULT_WIDTHS,
        usual_colour_share=usual_colour_share,
        car_length_share=spec.car_length_share or CAR_LENGTH_SHARE,
    )
    # The source model is never tested (its validation picks its checkpoint): no test images.
    source = target.replace(
        num_classes=spec.source_classes,
        train_per_class=spec.source_train_per_class,
        test_per_class=0,
        task="source",
    )
    sets = {}
    for cars, val_fraction in ((target, spec.val_fraction), (source, source_val_fraction)):
        out = folder / cars.task
        if not (out / "dataset.json").exists():
            prepare_synthetic(out, cars, val_fraction=val_fraction)
        sets[cars.task] = str(out)
    return sets["target"], sets["source"]


def pretrain_config(
    sweep: SweepConfig, demo: DemoSpec, source_data: str, cluster: Mapping[str, float]
) -> TrainConfig:
    """The source model's run: ``scratch`` on the source classes, on the whole ``cluster``.

    Args:
        cluster: the cluster's resources, as ``ray.cluster_resources()`` gives them.
    """
    cpus_per_worker = sweep.cpus_per_worker
    if not sweep.use_gpu:
        cpus_per_worker = cluster.get("CPU", 1) / sweep.num_workers
    resources = plan_trial_resources(
        cluster,
        num_workers=sweep.num_workers,
        cpus_per_worker=cpus_per_worker,
        use_gpu=sweep.use_gpu,
    )
    config = sweep.create_train_config(
        source_data,
        "scratch",
        demo.pretrain_lr,
        demo.pretrain_augment,
        cpus_per_worker=resources.cpus_per_worker,
    )
    return config.replace(
        epochs=demo.pretrain_epochs,
        batch_size=demo.pretrain_batch_size or sweep.batch_size,
        warmup_epochs=demo.pretrain_warmup_epochs,
    )


def pretrain_source_model(sweep: SweepConfig, demo: DemoSpec, source_data: str) -> str:
    """Train (or reuse) the source model and return its best checkpoint's folder."""
    config = pretrain_config(sweep, demo, source_data, ray.cluster_resources())
    name = f"source-{_fingerprint(config.replace(cpus_per_worker=1.0, num_workers=1))}"
    storage = join_path(sweep.storage, PRETRAINED_DIR)
    run_path = join_path(storage, name)
    # A run cut short before its last epoch is trained again, from its last checkpoint.
    previous = read_run(run_path)
    if previous.finished(config.epochs):
        logger.info("Reusing the source model in %s", run_path)
        return _best_checkpoint_path(previous)
    return _best_checkpoint_path(run_training(config, storage_path=storage, name=name))


def _best_checkpoint_path(run: StoredRun) -> str:
    checkpoint = run.best or run.latest
    if checkpoint is None:
        raise RuntimeError(f"the source model's run at {run.path} left no checkpoint")
    return checkpoint.location


def prepare_demo(sweep: SweepConfig) -> DemoInputs:
    """Everything the demo sweep needs, created or reused."""
    if sweep.demo is None:
        raise ConfigError(f"preset {sweep.preset!r} has no demo; pass --data")
    data, source_data = prepare_demo_data(sweep.demo, sweep.seed)
    weights = sweep.weights
    if weights == DEMO_SOURCE_WEIGHTS:
        weights = pretrain_source_model(sweep, sweep.demo, source_data)
    return DemoInputs(data=data, source_data=source_data, weights=weights)
