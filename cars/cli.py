"""Command lines of the jobs, parsed into typed requests.

The jobs under ``jobs/`` only call these parsers and one function each; the
parsers live here so that tests exercise exactly what a user types.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from cars.checkpoint import WeightsError
from cars.config import (
    AUGMENTS,
    OPTIMIZERS,
    PRECISE_BN_SAMPLES,
    REGIMES,
    ConfigError,
    TrainConfig,
)
from cars.data import SPLITS, DataError
from cars.paths import FEATURES_DIR, REPORTS_DIR, RUNS_DIR, resolve_path
from cars.prediction.config import PredictConfig
from cars.resources import ResourceError
from cars.storage import join_path
from cars.sweep_config import PRESETS, SweepConfig, create_sweep_config

# Errors in what the user asked for or in their surroundings (a path, storage,
# permissions): shown as one line, without a traceback unless --debug is given.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    WeightsError,
    ResourceError,
    OSError,
)
DEBUG_FLAG = "--debug"


class ReportError(Exception):
    """The report step failed after the sweep finished; its results are intact."""

    def __init__(self, sweep_path: str, reports: str, cause: BaseException) -> None:
        command = shlex.join(["python", "jobs/report.py", "--sweep", sweep_path])
        command += " " + shlex.join(["--reports", reports])
        super().__init__(
            f"the report step failed: {type(cause).__name__}: {cause}\n"
            f"The sweep's results are intact at {sweep_path}. Once the cause is fixed, "
            f"write the report with:\n  {command}"
        )
        self.sweep_path = sweep_path
        self.command = command


def _add_debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error, too")


@contextmanager
def exit_on_user_error(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Turn a user error into ``error: <message>`` on stderr and exit status 2.

    A :class:`ReportError` exits with status 1. With ``--debug`` in ``argv`` (by
    default the process's arguments) the traceback is printed first.
    """
    debug = DEBUG_FLAG in (sys.argv[1:] if argv is None else argv)
    try:
        yield
    except (ReportError, *USER_ERRORS) as error:
        if debug:
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1 if isinstance(error, ReportError) else 2) from None


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _weights(value: str) -> str:
    """``imagenet``, ``none``, or a local file or folder (resolved against the project)."""
    if value.lower() in ("none", "imagenet"):
        return value.lower()
    return resolve_path(value)


def _add_resource_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("resources")
    group.add_argument("--num-workers", type=int, help="Ray Train workers (GPUs) per run")
    gpu = group.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu",
        dest="use_gpu",
        action="store_true",
        default=None,
        help="train on GPUs, one per worker",
    )
    gpu.add_argument("--cpu", dest="use_gpu", action="store_false", help="train on CPUs")
    group.add_argument("--cpus-per-worker", type=float, help="CPUs each worker reserves")
    group.add_argument(
        "--loader-workers",
        type=int,
        help="DataLoader processes per worker (default: CPUs - 1 on GPU, 0 on CPU)",
    )


def _add_feature_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-feature-cache",
        dest="feature_cache",
        action="store_false",
        default=None,
        help="frozen runs without augmentation train on images every epoch, instead of on "
        "backbone features computed once",
    )


@dataclass(frozen=True)
class TrainJob:
    """One training run without Tune."""

    config: TrainConfig
    storage: str
    name: str


def create_train_parser() -> argparse.ArgumentParser:
    """The parser of ``jobs/train.py``."""
    parser = argparse.ArgumentParser(
        prog="jobs/train.py",
        description="Train one Xception regime on a prepared data set with Ray Train.",
    )
    parser.add_argument("--data", required=True, help="prepared data set (folder or URI)")
    parser.add_argument("--regime", choices=REGIMES, default="finetune")
    parser.add_argument(
        "--trainable-blocks",
        type=int,
        help="finetune: Keras Xception blocks trained, from the end (0-14)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="imagenet | none | a .pth/.safetensors file | a checkpoint folder",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the new head")
    parser.add_argument(
        "--backbone-lr-mult",
        type=float,
        default=0.1,
        help="pretrained blocks learn at lr times this",
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    parser.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0: off)")
    parser.add_argument("--augment", choices=AUGMENTS, default="basic")
    parser.add_argument("--bbox-crop", action="store_true", help="crop to the car's box first")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size")
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--precise-bn-samples",
        type=int,
        default=PRECISE_BN_SAMPLES,
        help="training images that recompute the BatchNorm statistics before each "
        "validation, at most an epoch's (0: keep the running averages)",
    )
    _add_feature_cache_option(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="restarts of a crashed worker group from its last checkpoint",
    )
    parser.add_argument(
        "--storage",
        default=str(RUNS_DIR),
        help="results and checkpoints: a folder or s3:// URI (default: runs/)",
    )
    parser.add_argument("--name", help="run name; an existing run of this name resumes")
    _add_resource_options(parser)
    _add_debug_option(parser)
    return parser


def parse_train_args(argv: Sequence[str] | None = None) -> TrainJob:
    """Parse ``jobs/train.py``'s command line into a validated job."""
    args = create_train_parser().parse_args(argv)
    storage = resolve_path(args.storage)
    config = TrainConfig(
        data=resolve_path(args.data),
        regime=args.regime,
        trainable_blocks=args.trainable_blocks,
        weights=args.weights,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        cutmix=args.cutmix,
        augment=args.augment,
        bbox_crop=args.bbox_crop,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_workers=1 if args.num_workers is None else args.num_workers,
        use_gpu=bool(args.use_gpu),
        cpus_per_worker=1.0 if args.cpus_per_worker is None else args.cpus_per_worker,
        loader_workers=args.loader_workers,
        compile=args.compile,
        precise_bn_samples=args.precise_bn_samples,
        feature_cache=args.feature_cache is not False,
        feature_store=join_path(storage, FEATURES_DIR),
        seed=args.seed,
        max_failures=args.max_failures,
    )
    name = args.name or f"train-{config.regime}-{_timestamp()}"
    return TrainJob(config=config, storage=storage, name=name)


@dataclass(frozen=True)
class SweepJob:
    """A new sweep (``sweep`` set) or the resumption of one (``resume``)."""

    storage: str
    name: str | None
    resume: bool
    reports: str
    report: bool
    sweep: SweepConfig | None


def create_sweep_parser() -> argparse.ArgumentParser:
    """The parser of ``jobs/sweep.py``."""
    parser = argparse.ArgumentParser(
        prog="jobs/sweep.py",
        description=(
            "Sweep the scratch / frozen / finetune regimes of Xception with Ray Tune and "
            "write the report. Without --data, runs the built-in demo on synthetic cars."
        ),
    )
    parser.add_argument("--data", help="prepared data set (folder or URI); omit for the demo")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="demo",
        help="smoke: fastest; demo: laptop CPU (default); full: Stanford Cars",
    )
    parser.add_argument("--name", help="sweep name (default: <preset>-<time>)")
    parser.add_argument(
        "--storage",
        default=str(RUNS_DIR),
        help="results and checkpoints: folder, NFS mount or s3:// (default: runs/)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep --name (default: the newest in --storage)",
    )
    parser.add_argument("--reports", default=str(REPORTS_DIR), help="where reports go")
    parser.add_argument(
        "--no-report", dest="report", action="store_false", help="stop after the sweep"
    )
    space = parser.add_argument_group("search space")
    space.add_argument("--regimes", nargs="+", choices=REGIMES)
    space.add_argument("--num-samples", type=int, help="trials per regime")
    space.add_argument(
        "--finetune-blocks",
        nargs="+",
        type=int,
        help="freeze depths that finetune trials draw from",
    )
    space.add_argument("--augments", nargs="+", choices=AUGMENTS)
    space.add_argument(
        "--lr-range",
        nargs=3,
        action="append",
        metavar=("REGIME", "LOW", "HIGH"),
        help="log-uniform learning-rate range of a regime (repeatable)",
    )
    space.add_argument(
        "--weights", type=_weights, help="pretrained weights of frozen/finetune (full: imagenet)"
    )
    run = parser.add_argument_group("each trial")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int, help="global batch size")
    run.add_argument("--image-size", type=int)
    run.add_argument("--bbox-crop", action="store_true", default=None)
    run.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    run.add_argument(
        "--max-concurrent-trials", type=int, help="default: as many as the cluster's resources hold"
    )
    run.add_argument(
        "--max-failures",
        type=int,
        help="restarts of a trial's crashed worker group, and of a trial lost with its node",
    )
    run.add_argument(
        "--precise-bn-samples",
        type=int,
        help=f"training images that recompute the BatchNorm statistics before each "
        f"validation (default {PRECISE_BN_SAMPLES}; 0: keep the running averages)",
    )
    _add_feature_cache_option(run)
    run.add_argument("--seed", type=int)
    run.add_argument("--gradcam-images", type=int)
    run.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        help="retrain each regime's best configuration with K fresh seeds after the sweep "
        "(0: off; default: the preset's, 3 in full, 0 in demo and smoke)",
    )
    _add_resource_options(parser)
    _add_debug_option(parser)
    return parser


def parse_sweep_args(argv: Sequence[str] | None = None) -> SweepJob:
    """Parse ``jobs/sweep.py``'s command line into a validated job."""
    parser = create_sweep_parser()
    args = parser.parse_args(argv)
    storage = resolve_path(args.storage)
    common = {"storage": storage, "reports": resolve_path(args.reports), "report": args.report}
    if args.resume:
        return SweepJob(name=args.name, resume=True, sweep=None, **common)
    lr_ranges = None
    if args.lr_range:
        lr_ranges = dict(PRESETS[args.preset]["lr_ranges"])
        for regime, low, high in args.lr_range:
            if regime not in REGIMES:
                parser.error(f"--lr-range: unknown regime {regime!r}; one of {REGIMES}")
            try:
                lr_ranges[regime] = (float(low), float(high))
            except ValueError:
                parser.error(f"--lr-range {regime} {low} {high}: LOW and HIGH must be numbers")
    name = args.name or f"{args.preset}-{_timestamp()}"
    sweep = create_sweep_config(
        args.preset,
        name,
        data=resolve_path(args.data) if args.data else None,
        storage=storage,
        weights=args.weights,
        regimes=tuple(args.regimes) if args.regimes else None,
        num_samples=args.num_samples,
        finetune_blocks=tuple(args.finetune_blocks) if args.finetune_blocks else None,
        augments=tuple(args.augments) if args.augments else None,
        lr_ranges=lr_ranges,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        bbox_crop=args.bbox_crop,
        grace_period=args.grace_period,
        max_concurrent_trials=args.max_concurrent_trials,
        max_failures=args.max_failures,
        precise_bn_samples=args.precise_bn_samples,
        feature_cache=args.feature_cache,
        seed=args.seed,
        gradcam_images=args.gradcam_images,
        confirm=args.confirm,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        cpus_per_worker=args.cpus_per_worker,
        loader_workers=args.loader_workers,
    )
    return SweepJob(name=name, resume=False, sweep=sweep, **common)


@dataclass(frozen=True)
class ReportJob:
    """Writing the report of a sweep."""

    sweep: str
    reports: str
    gradcam_images: int | None


def parse_report_args(argv: Sequence[str] | None = None) -> ReportJob:
    """Parse ``jobs/report.py``'s command line."""
    parser = argparse.ArgumentParser(
        prog="jobs/report.py",
        description="Write the report of a finished or interrupted sweep.",
    )
    parser.add_argument(
        "--sweep", required=True, help="the sweep's folder (<storage>/<name>) or URI"
    )
    parser.add_argument(
        "--reports",
        default=str(REPORTS_DIR),
        help="reports/<sweep name>/ is written under this folder",
    )
    parser.add_argument("--gradcam-images", type=int, help="test images per Grad-CAM grid")
    _add_debug_option(parser)
    args = parser.parse_args(argv)
    return ReportJob(
        sweep=resolve_path(args.sweep),
        reports=resolve_path(args.reports),
        gradcam_images=args.gradcam_images,
    )


def parse_predict_args(argv: Sequence[str] | None = None) -> PredictConfig:
    """Parse ``jobs/predict.py``'s command line."""
    parser = argparse.ArgumentParser(
        prog="jobs/predict.py",
        description="Classify images with a trained model, as a Ray Data job; write Parquet.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a report's best/ folder, a checkpoint folder, or any folder timm loads",
    )
    parser.add_argument(
        "--images",
        required=True,
        help="a folder of images (searched recursively), an s3:// prefix, or a prepared data set",
    )
    parser.add_argument(
        "--split", choices=SPLITS, help="with a prepared data set: the split (default: test)"
    )
    parser.add_argument(
        "--out", required=True, help="new folder or URI: predictions/ (Parquet), summary.json"
    )
    # Defaults come from the config, so the two never disagree.
    defaults = {f.name: f.default for f in dataclasses.fields(PredictConfig)}
    parser.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], help="images per model call"
    )
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", dest="use_gpu", action="store_true", help="one GPU per actor")
    gpu.add_argument("--cpu", dest="use_gpu", action="store_false", help="CPU actors (default)")
    parser.add_argument(
        "--cpus-per-actor",
        type=float,
        default=defaults["cpus_per_actor"],
        help="CPUs (torch threads) per CPU actor",
    )
    parser.add_argument(
        "--gradcam",
        type=int,
        default=defaults["gradcam"],
        metavar="N",
        help="also draw Grad-CAMs of N images",
    )
    args = parser.parse_args(argv)
    return PredictConfig(
        model=resolve_path(args.model),
        images=resolve_path(args.images),
        out=resolve_path(args.out),
        split=args.split,
        use_gpu=args.use_gpu,
        batch_size=args.batch_size,
        cpus_per_actor=args.cpus_per_actor,
        gradcam=args.gradcam,
    )
