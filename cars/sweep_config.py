"""Typed configuration of a sweep, and the presets it starts from.

``smoke`` is the fastest end-to-end run (the tests use it), ``demo`` the
default that shows the whole study on a laptop CPU in a few minutes, and
``full`` the real study of Stanford Cars at 299 px, each trial data-parallel
over two GPUs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from cars.config import (
    AUGMENTS,
    NUM_BLOCKS,
    REGIMES,
    ConfigError,
    TrainConfig,
    field_defaults,
)

_TRAIN = field_defaults(TrainConfig)

# The demo presets' weights: a source model the demo pretrains on synthetic
# classes disjoint from the study's, standing in for ImageNet.
DEMO_SOURCE_WEIGHTS = "demo-source"


@dataclass(frozen=True)
class DemoSpec:
    """The built-in synthetic data set and source pretraining of the demo presets.

    ``train_per_class`` images of each target class are split into training and
    ``val_fraction`` validation; the source set holds out ``source_val_fraction``
    (by default ``val_fraction``): its validation only picks the source checkpoint.
    The source model trains ``scratch`` for ``pretrain_epochs`` at ``pretrain_lr``
    with batches of ``pretrain_batch_size`` (by default the sweep's), the
    ``pretrain_augment`` policy and ``pretrain_warmup_epochs`` of warmup. Each
    class's photos wear its usual colour with ``usual_colour_share`` chance (by
    default the generator's), and any colour otherwise. Photos are ``photo_widths``
    pixels wide, and each car's length is a ``car_length_share`` of its photo's
    width (by default the generator's close-ups).
    """

    num_classes: int
    train_per_class: int
    test_per_class: int
    source_classes: int
    source_train_per_class: int
    pretrain_epochs: int
    pretrain_lr: float
    val_fraction: float
    source_val_fraction: float | None = None
    pretrain_batch_size: int | None = None
    pretrain_augment: str = "basic"
    pretrain_warmup_epochs: float = 1.0
    usual_colour_share: float | None = None
    photo_widths: tuple[int, int] | None = None
    car_length_share: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("photo_widths", "car_length_share"):
            value = getattr(self, name)
            if value is not None:  # JSON gives lists back
                object.__setattr__(self, name, tuple(value))
        if self.pretrain_augment not in AUGMENTS:
            raise ConfigError(
                f"demo pretrain_augment={self.pretrain_augment!r} is not valid: one of {AUGMENTS}"
            )
        if self.pretrain_batch_size is not None and self.pretrain_batch_size < 1:
            raise ConfigError(
                f"demo pretrain_batch_size={self.pretrain_batch_size} is not valid: at least 1"
            )
        if self.pretrain_warmup_epochs < 0:
            raise ConfigError(
                f"demo pretrain_warmup_epochs={self.pretrain_warmup_epochs} is not valid: 0 or more"
            )
        if self.usual_colour_share is not None and not 0 <= self.usual_colour_share <= 1:
            raise ConfigError(
                f"demo usual_colour_share={self.usual_colour_share} is not valid: from 0 to 1"
            )
        widths = self.photo_widths
        if widths is not None and not (len(widths) == 2 and 32 <= widths[0] <= widths[1]):
            raise ConfigError(
                f"demo photo_widths={widths} is not valid: (low, high) with 32 <= low <= high"
            )
        share = self.car_length_share
        if share is not None and not (len(share) == 2 and 0.1 <= share[0] <= share[1] <= 1):
            raise ConfigError(
                f"demo car_length_share={share} is not valid: (low, high) with "
                "0.1 <= low <= high <= 1"
            )


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs; the swept values are drawn per trial by Tune.

    ``num_samples`` trials are drawn for each regime in ``regimes``. Learning
    rates are log-uniform in each regime's ``lr_ranges`` entry; ``finetune``
    draws its depth from ``finetune_blocks``; every trial draws an ``augment``.
    ``confirm`` fresh seeds retrain each regime's best configuration after the
    sweep (0: no confirmation stage). With ``feature_cache``, frozen trials
    without augmentation train their head on backbone features computed once
    per sweep (:mod:`cars.learn.features`). The report draws the Grad-CAMs of
    ``gradcam_images`` test images and measures those of ``gradcam_measured``
    (the drawn ones and others at random). ``lr_ranges`` hold rates for global
    batches of ``lr_batch_size`` (unset: of ``batch_size``); trials with another
    batch scale the rate they draw (:func:`cars.learn.optim.scale_lr`), and the
    report shows the drawn rate.
    """

    name: str
    preset: str = "demo"
    data: str | None = None
    storage: str = "runs"
    weights: str | None = None
    regimes: tuple[str, ...] = REGIMES
    num_samples: int = 2
    finetune_blocks: tuple[int, ...] = (1, 2, 4, 8, 14)
    lr_ranges: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "scratch": (3e-4, 3e-3),
            "frozen": (1e-3, 3e-2),
            "finetune": (1e-4, 3e-3),
        }
    )
    augments: tuple[str, ...] = AUGMENTS
    # Each trial's settings default as a single training run's do.
    epochs: int = _TRAIN["epochs"]
    batch_size: int = _TRAIN["batch_size"]
    lr_batch_size: int | None = _TRAIN["lr_batch_size"]
    image_size: int = _TRAIN["image_size"]
    num_workers: int = _TRAIN["num_workers"]
    use_gpu: bool = _TRAIN["use_gpu"]
    cpus_per_worker: float = _TRAIN["cpus_per_worker"]
    loader_workers: int | None = _TRAIN["loader_workers"]
    bbox_crop: bool = _TRAIN["bbox_crop"]
    backbone_lr_mult: float = _TRAIN["backbone_lr_mult"]
    max_failures: int = _TRAIN["max_failures"]
    worker_start_timeout_s: float = _TRAIN["worker_start_timeout_s"]
    worker_start_tries: int = _TRAIN["worker_start_tries"]
    seed: int = _TRAIN["seed"]
    precise_bn_samples: int = _TRAIN["precise_bn_samples"]
    feature_cache: bool = _TRAIN["feature_cache"]
    compile: bool = _TRAIN["compile"]
    grace_period: int = 3
    reduction_factor: float = 3.0
    max_concurrent_trials: int | None = None
    gradcam_images: int = 8
    gradcam_measured: int = 48
    confirm: int = 0
    demo: DemoSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "regimes", tuple(self.regimes))
        object.__setattr__(self, "finetune_blocks", tuple(self.finetune_blocks))
        object.__setattr__(self, "augments", tuple(self.augments))
        object.__setattr__(
            self, "lr_ranges", {k: (float(v[0]), float(v[1])) for k, v in self.lr_ranges.items()}
        )
        if isinstance(self.demo, Mapping):
            object.__setattr__(self, "demo", DemoSpec(**self.demo))
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        if self.weights == DEMO_SOURCE_WEIGHTS and (self.demo is None or self.data is not None):
            raise ConfigError(
                f"weights={self.weights!r} is not valid with --data: the demo's source model "
                "exists only for the demo's synthetic data; pass --weights imagenet, a "
                "weights file or checkpoint, or none"
            )
        if not self.name or "/" in self.name:
            raise ConfigError(f"name={self.name!r} is not valid: a non-empty name without '/'")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset={self.preset!r} is not valid: one of {sorted(PRESETS)}")
        bad = [r for r in self.regimes if r not in REGIMES] or (not self.regimes and ["(none)"])
        if bad:
            raise ConfigError(f"regimes={list(self.regimes)} is not valid: choose from {REGIMES}")
        for regime in self.regimes:
            if regime not in self.lr_ranges:
                raise ConfigError(f"lr_ranges has no range for regime {regime!r}")
            low, high = self.lr_ranges[regime]
            if not 0 < low <= high:
                raise ConfigError(
                    f"lr_ranges[{regime!r}]=({low:g}, {high:g}) is not valid: 0 < low <= high"
                )
        if not self.finetune_blocks or any(not 1 <= b <= NUM_BLOCKS for b in self.finetune_blocks):
            raise ConfigError(
                f"finetune_blocks={list(self.finetune_blocks)} is not valid: "
                f"integers from 1 to {NUM_BLOCKS}"
            )
        if not self.augments or any(a not in AUGMENTS for a in self.augments):
            raise ConfigError(f"augments={list(self.augments)} is not valid: from {AUGMENTS}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples={self.num_samples} is not valid: at least 1")
        if self.grace_period < 1:
            raise ConfigError(f"grace_period={self.grace_period} is not valid: at least 1")
        if self.reduction_factor <= 1:
            raise ConfigError(f"reduction_factor={self.reduction_factor} is not valid: above 1")
        if self.confirm < 0:
            raise ConfigError(f"confirm={self.confirm} is not valid: 0 (off) or more seeds")
        if self.gradcam_images < 1:
            raise ConfigError(f"gradcam_images={self.gradcam_images} is not valid: at least 1")
        if self.gradcam_measured < 1:
            raise ConfigError(f"gradcam_measured={self.gradcam_measured} is not valid: at least 1")
        if self.data is None and self.demo is None:
            raise ConfigError(
                f"preset {self.preset!r} sweeps a prepared data set: pass --data "
                "(make one with jobs/prepare.py --source <Stanford Cars folder> --out <dir>)"
            )
        # Validate the per-trial settings now, not inside a trial an hour later.
        self.create_train_config(
            self.data or "<demo data>",
            "finetune",
            self.lr_ranges.get("finetune", (1e-3, 1e-3))[0],
            self.augments[0],
            self.finetune_blocks[0],
        )

    @property
    def num_trials(self) -> int:
        """How many trials the sweep runs."""
        return self.num_samples * len(self.regimes)

    def create_train_config(
        self,
        data: str,
        regime: str,
        lr: float,
        augment: str,
        trainable_blocks: int | None = None,
        *,
        cpus_per_worker: float | None = None,
    ) -> TrainConfig:
        """The training run of one trial."""
        # Every setting a sweep shares with a training run passes on as it is.
        shared = {f.name for f in dataclasses.fields(self)} & set(_TRAIN)
        shared -= {"data", "weights", "cpus_per_worker"}
        return TrainConfig(
            **{name: getattr(self, name) for name in shared},
            data=data,
            regime=regime,
            trainable_blocks=trainable_blocks,
            weights=None if regime == "scratch" else self.weights,
            lr=lr,
            augment=augment,
            cpus_per_worker=cpus_per_worker or self.cpus_per_worker,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (written next to the sweep, read back by ``--resume``)."""
        values = dataclasses.asdict(self)
        values["lr_ranges"] = {k: list(v) for k, v in self.lr_ranges.items()}
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Rebuild a config written by ``to_dict``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown SweepConfig fields {unknown}")
        return cls(**values)

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)


# What the two CPU presets share: a short run of small images, one sample per
# regime, transferring from the demo's own source model.
_CPU_PRESET: dict[str, Any] = {
    "num_samples": 1,
    "augments": ("none", "basic"),
    "epochs": 2,
    "batch_size": 16,
    "image_size": 64,
    "grace_period": 1,
    "weights": DEMO_SOURCE_WEIGHTS,
    # A laptop adds no node: a worker group waits for the trials before it to end
    # (another sweep's too), a few minutes on a busy machine, not a node's start-up.
    "worker_start_timeout_s": 180.0,
    "worker_start_tries": 3,
}

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_CPU_PRESET,
        "finetune_blocks": (1, 2),
        "lr_ranges": {"scratch": (1e-3, 3e-3), "frozen": (3e-3, 1e-2), "finetune": (1e-3, 3e-3)},
        "num_workers": 2,
        "gradcam_images": 4,
        "gradcam_measured": 4,
        "demo": DemoSpec(
            num_classes=4,
            train_per_class=10,
            test_per_class=4,
            source_classes=4,
            source_train_per_class=10,
            pretrain_epochs=1,
            pretrain_lr=2e-3,
            val_fraction=0.25,
        ),
    },
    # Transfer to a small target set, the regime the study is about: 5 training
    # images per class (batches of 8 give each epoch 5 steps), 30 validation and
    # 60 test images per class, so that the regimes' differences stand out of the
    # noise. The source task is larger and more varied (24 classes of 36 training
    # images), so the features it teaches are worth transferring; two epochs
    # without augmentation get it furthest in the time. Every image is cropped to
    # its car's box, so that at 64 px the car fills the input, and paint is drawn
    # at random, so that classes differ by their parts alone; the photos are wide
    # scenes, so that the report's Grad-CAMs of them have room (see cars/demo.py).
    "demo": {
        **_CPU_PRESET,
        # One trial per regime and 30 steps: a random-resized-crop draw would
        # decide a regime's result by itself (--augments none basic sweeps it).
        "augments": ("none",),
        "finetune_blocks": (1, 2, 4),
        "lr_ranges": {"scratch": (1e-3, 3e-3), "frozen": (1e-3, 1e-2), "finetune": (5e-4, 3e-3)},
        "epochs": 6,
        "batch_size": 8,
        "bbox_crop": True,
        # Enough for the statistics of 64 px batches, at a quarter of the default's cost.
        "precise_bn_samples": 256,
        "demo": DemoSpec(
            num_classes=8,
            train_per_class=35,
            test_per_class=60,
            source_classes=24,
            source_train_per_class=40,
            pretrain_epochs=2,
            pretrain_lr=1e-3,
            val_fraction=0.86,
            source_val_fraction=0.1,
            pretrain_batch_size=16,
            pretrain_augment="none",
            pretrain_warmup_epochs=0.3,
            usual_colour_share=0.0,
            # Cars of about the default's pixel size in wider scenes, away from the
            # centre: the trials see the boxes, and the report's Grad-CAMs explain
            # the whole test photos, where the car leaves room around it.
            photo_widths=(144, 288),
            car_length_share=(0.35, 0.55),
        ),
    },
    "full": {
        "num_samples": 4,
        "finetune_blocks": (1, 2, 4, 8, 14),
        "augments": AUGMENTS,
        "lr_ranges": {"scratch": (3e-4, 3e-3), "frozen": (1e-3, 3e-2), "finetune": (5e-5, 2e-3)},
        "epochs": 30,
        # 128 images per GPU: at 32 or 64 an H200 runs Xception far below its rate
        # (benchmarks/bench_gpu.py measures 64, 128 and 256). The ranges above were
        # set for global batches of 64; trials scale the rate they draw to 256.
        "batch_size": 256,
        "lr_batch_size": 64,
        "image_size": 299,
        # Each trial trains data-parallel over two GPUs (README, cluster.yaml).
        "num_workers": 2,
        "use_gpu": True,
        "cpus_per_worker": 8.0,
        "weights": "imagenet",
        "grace_period": 5,
        "confirm": 3,
    },
}


def create_sweep_config(preset: str, name: str, **overrides: Any) -> SweepConfig:
    """A sweep config from a preset, with the given fields (those not ``None``) replaced.

    The demo presets transfer from their own source model; given ``data``, they
    transfer from ImageNet unless ``weights`` says otherwise.
    """
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r} is not valid: one of {sorted(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**PRESETS[preset], **given}
    if values.get("weights") == DEMO_SOURCE_WEIGHTS and values.get("data") is not None:
        # A demo preset on a real data set: transfer from ImageNet, as the study does.
        values["weights"] = given.get("weights", "imagenet")
    return SweepConfig(name=name, preset=preset, **values)
