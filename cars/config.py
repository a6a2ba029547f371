"""Typed configuration of a training run, validated when it is built.

Configs are frozen dataclasses; they become plain dicts only at the Ray
boundary (``to_dict`` / ``from_dict``), so that every worker rebuilds and
re-validates the same typed object.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

# What "best" means, for epochs, checkpoints and trials alike: the highest METRIC;
# ties, common on a small validation set, go to the lower TIE_BREAK, then to the
# later epoch (as Ray Train keeps the later of two equal checkpoints) and to the
# earlier trial. SCORE holds the first two in one number, for what Ray ranks.
METRIC = "val_acc"
MODE = "max"
TIE_BREAK = "val_loss"
# Reported every epoch: Ray Train keeps the checkpoints with the highest SCORE.
SCORE = "val_score"
# The highest SCORE of a run so far, reported every epoch: Tune ranks trials by it
# (its progress table ranks by the latest report, which is not a run's best epoch).
BEST_SCORE = "best_val_score"
SCORE_MODE = "max"
# METRIC is compared to this many decimals, so that validation sets of up to a
# million images keep their accuracies apart and float noise cannot split a tie.
_METRIC_DECIMALS = 6

REGIMES = ("scratch", "frozen", "finetune")
# The Grad-CAM baseline beside the regimes: the same network at a random initialisation.
RANDOM_INIT = "random-init"
AUGMENTS = ("none", "basic", "strong")
OPTIMIZERS = ("adamw", "sgd")
NUM_BLOCKS = 14
# Training images that recompute the BatchNorm statistics before each validation:
# enough for per-channel means and variances that barely move between draws, and
# a small share of an epoch of Stanford Cars (about 7,300 training images).
PRECISE_BN_SAMPLES = 1024


def selection_score(metrics: Mapping[str, Any]) -> float:
    """One epoch's METRIC and TIE_BREAK as one number, higher is better; NaN without METRIC.

    The tie-break (a loss, zero or more) adds less than one step of the rounded
    METRIC, so it orders only epochs whose METRIC is equal.
    """
    value, tie = _as_float(metrics.get(METRIC)), _as_float(metrics.get(TIE_BREAK))
    if math.isnan(value):
        return math.nan
    sign = 1.0 if MODE == "max" else -1.0
    tie_term = 0.0 if math.isnan(tie) else 0.1 / (1.0 + tie)
    return sign * round(value, _METRIC_DECIMALS) + tie_term * 10.0**-_METRIC_DECIMALS


def _as_float(value: Any) -> float:
    """``value`` as a float; NaN for a missing value (None, pandas' NA)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def selection_scores(history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """SCORE of a run's latest epoch and BEST_SCORE over all of ``history`` (oldest first)."""
    scores = [selection_score(m) for m in history] or [math.nan]
    valid = [s for s in scores if not math.isnan(s)]
    return {SCORE: scores[-1], BEST_SCORE: max(valid, default=math.nan)}


def field_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of a dataclass that has one: the single source of defaults."""
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


class ConfigError(ValueError):
    """A configuration value that is out of range, with the field and what is allowed."""


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not valid: {allowed}")


def resolve_trainable_blocks(regime: str, trainable_blocks: int | None) -> int:
    """The number of Keras Xception blocks a regime trains, counted from the end.

    ``scratch`` always trains all 14, ``frozen`` none; ``finetune`` defaults to
    the last block.
    """
    _require(regime in REGIMES, "regime", regime, f"one of {', '.join(REGIMES)}")
    if regime == "scratch":
        return NUM_BLOCKS
    if regime == "frozen":
        return 0
    if trainable_blocks is None:
        return 1
    _require(
        isinstance(trainable_blocks, int) and 0 <= trainable_blocks <= NUM_BLOCKS,
        "trainable_blocks",
        trainable_blocks,
        f"an integer from 0 to {NUM_BLOCKS}",
    )
    return trainable_blocks


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run (a Ray Train run, or a sweep trial) needs.

    ``batch_size`` is the global batch: each of ``num_workers`` workers takes
    ``batch_size / num_workers`` images per step, so results stay comparable
    across cluster sizes. Before every validation the trainable BatchNorm
    layers' statistics are recomputed over ``precise_bn_samples`` training
    images (at most one epoch's; 0 keeps the running averages of training).
    With ``feature_cache``, a run whose backbone is entirely frozen and whose
    inputs never change (augment ``none``, no mixup) trains its head on pooled
    features computed once (:mod:`cars.learn.features`), kept in ``feature_store``
    (a folder or URI shared by the runs that may reuse them; unset: in memory).
    ``lr`` is the rate for global batches of ``lr_batch_size`` (unset: of
    ``batch_size``); a run with another batch scales it as
    :func:`cars.learn.optim.scale_lr` says. ``compile`` runs the model through
    ``torch.compile`` (eagerly if compiling fails). A run of several workers waits
    up to ``worker_start_timeout_s`` for the cluster to place them (a busy node, a
    node still pulling its environment or being added by the autoscaler), and gives
    up after ``worker_start_tries`` such waits; the defaults are a cluster's, and
    the CPU presets of a sweep set a laptop's (:data:`cars.sweep_config.PRESETS`).
    """

    data: str
    regime: str = "finetune"
    trainable_blocks: int | None = None
    weights: str | None = None
    lr: float = 1e-3
    lr_batch_size: int | None = None
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    augment: str = "basic"
    bbox_crop: bool = False
    bbox_margin: float = 0.1
    image_size: int = 299
    epochs: int = 30
    batch_size: int = 32
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    loader_workers: int | None = None
    compile: bool = False
    seed: int = 0
    # Restarts after a failure: of a crashed worker group, from its last checkpoint,
    # and in a sweep of a trial lost with its node; -1 retries forever.
    max_failures: int = 2
    worker_start_timeout_s: float = 600.0
    worker_start_tries: int = 3
    checkpoints_to_keep: int = 2
    precise_bn_samples: int = PRECISE_BN_SAMPLES
    feature_cache: bool = True
    feature_store: str | None = None

    def __post_init__(self) -> None:
        _require(bool(self.data), "data", self.data, "the path or URI of a prepared data set")
        blocks = resolve_trainable_blocks(self.regime, self.trainable_blocks)
        object.__setattr__(self, "trainable_blocks", blocks)
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        _require(
            not (self.regime == "scratch" and self.weights is not None),
            "weights",
            self.weights,
            "regime 'scratch' trains from random weights; leave weights unset or 'none'",
        )
        _require(self.lr > 0, "lr", self.lr, "a positive learning rate")
        _require(
            self.lr_batch_size is None or self.lr_batch_size >= 1,
            "lr_batch_size",
            self.lr_batch_size,
            "the global batch size lr was chosen for (at least 1), or unset: this run's",
        )
        _require(
            0 < self.backbone_lr_mult <= 1,
            "backbone_lr_mult",
            self.backbone_lr_mult,
            "a multiplier in (0, 1] applied to pretrained blocks' learning rate",
        )
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "zero or more")
        _require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a value in [0, 1)")
        _require(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "zero or more")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", self.min_lr_ratio, "in [0, 1]")
        _require(
            0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)"
        )
        _require(self.mixup >= 0, "mixup", self.mixup, "a Beta alpha >= 0 (0 turns it off)")
        _require(self.cutmix >= 0, "cutmix", self.cutmix, "a Beta alpha >= 0 (0 turns it off)")
        _require(self.augment in AUGMENTS, "augment", self.augment, f"one of {AUGMENTS}")
        _require(0 <= self.bbox_margin <= 1, "bbox_margin", self.bbox_margin, "in [0, 1]")
        _require(self.image_size >= 32, "image_size", self.image_size, "at least 32 pixels")
        _require(self.epochs >= 1, "epochs", self.epochs, "at least 1")
        _require(self.num_workers >= 1, "num_workers", self.num_workers, "at least 1")
        _require(
            self.batch_size >= self.num_workers,
            "batch_size",
            self.batch_size,
            f"the global batch, at least one image per worker ({self.num_workers})",
        )
        _require(self.cpus_per_worker > 0, "cpus_per_worker", self.cpus_per_worker, "above 0")
        _require(
            self.loader_workers is None or self.loader_workers >= 0,
            "loader_workers",
            self.loader_workers,
            "zero or more, or unset for a default",
        )
        _require(self.max_failures >= -1, "max_failures", self.max_failures, "-1 (forever) or more")
        _require(
            self.worker_start_timeout_s > 0,
            "worker_start_timeout_s",
            self.worker_start_timeout_s,
            "the seconds each try waits for the workers to start, above 0",
        )
        _require(
            self.worker_start_tries >= 1,
            "worker_start_tries",
            self.worker_start_tries,
            "how often to try starting the workers, at least 1",
        )
        _require(
            self.precise_bn_samples >= 0,
            "precise_bn_samples",
            self.precise_bn_samples,
            "zero (keep the running averages of training) or more training images",
        )
        _require(
            self.checkpoints_to_keep >= 1,
            "checkpoints_to_keep",
            self.checkpoints_to_keep,
            "at least 1",
        )

    @property
    def batch_size_per_worker(self) -> int:
        """Images per step on each worker."""
        return max(1, self.batch_size // self.num_workers)

    def precise_bn_batches(self, steps_per_epoch: int) -> int:
        """Training batches per worker that recompute the BatchNorm statistics.

        Enough global batches to hold ``precise_bn_samples`` images, capped at
        one epoch (``steps_per_epoch`` batches per worker).
        """
        images_per_step = self.batch_size_per_worker * self.num_workers
        return min(steps_per_epoch, math.ceil(self.precise_bn_samples / images_per_step))

    @property
    def pretrained(self) -> bool:
        """Whether the run starts from pretrained weights."""
        return self.weights is not None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for Ray's configs and checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Rebuild (and re-validate) a config; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(names)}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)
