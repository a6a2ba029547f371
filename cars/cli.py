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
from typing import Any

from cars.cluster.resources import ResourceError
from cars.config import (
    AUGMENTS,
    OPTIMIZERS,
    REGIMES,
    ConfigError,
    TrainConfig,
    field_defaults,
)
from cars.data import SPLITS, DataError
from cars.learn.checkpoint import WeightsError
from cars.paths import FEATURES_DIR, REPORTS_DIR, RUNS_DIR, resolve_path
from cars.prediction.config import PredictConfig
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
# A training run's defaults; a sweep's come from its preset, then from these.
TRAIN_DEFAULTS = field_defaults(TrainConfig)
PRECISE_BN_HELP = (
    "training images that recompute the BatchNorm statistics before each validation, "
    f"at most an epoch's (default {TRAIN_DEFAULTS['precise_bn_samples']}; "
    "0: keep the running averages)"
)
GRADCAM_IMAGES_HELP = "test images drawn in the Grad-CAM figures (default: the preset's)"
GRADCAM_MEASURED_HELP = (
    "test images whose Grad-CAMs are measured against their boxes, the drawn ones among "
    "them (default: the preset's)"
)
LR_SCALING_HELP = "another --batch-size scales them, linearly for SGD, by the square root for AdamW"
COMPILE_HELP = "torch.compile the model (it trains uncompiled if compiling fails)"
WORKER_START_TIMEOUT_HELP = (
    "seconds each try waits for a run's workers to be placed "
    f"(default {TRAIN_DEFAULTS['worker_start_timeout_s']:.0f}, a cluster's; the CPU presets': "
    f"{PRESETS['smoke']['worker_start_timeout_s']:.0f})"
)
WORKER_START_TRIES_HELP = (
    "tries to start a run's workers before the run fails, saying why "
    f"(default {TRAIN_DEFAULTS['worker_start_tries']})"
)
MAX_FAILURES_HELP = (
    "restarts of a crashed worker group from its last checkpoint, and in a sweep of a "
    f"trial lost with its node (default {TRAIN_DEFAULTS['max_failures']}; -1: forever)"
)


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


# The options of jobs/train.py that set a TrainConfig field of the same name, with
# what argparse needs beyond the field's type.
_TRAIN_OPTIONS: dict[str, dict[str, Any]] = {
    "lr": {"help": "learning rate of the new head"},
    "backbone_lr_mult": {"help": "pretrained blocks learn at lr times this"},
    "optimizer": {"choices": OPTIMIZERS},
    "weight_decay": {},
    "warmup_epochs": {},
    "label_smoothing": {},
    "mixup": {"help": "mixup alpha (0: off)"},
    "cutmix": {"help": "cutmix alpha (0: off)"},
    "augment": {"choices": AUGMENTS},
    "bbox_crop": {"help": "crop to the car's box first"},
    "epochs": {},
    "batch_size": {"help": "global batch size"},
    "image_size": {},
    "compile": {"help": COMPILE_HELP},
    "precise_bn_samples": {"help": PRECISE_BN_HELP},
    "seed": {},
    "max_failures": {"help": MAX_FAILURES_HELP},
    "worker_start_timeout_s": {"metavar": "S", "help": WORKER_START_TIMEOUT_HELP},
    "worker_start_tries": {"metavar": "N", "help": WORKER_START_TRIES_HELP},
}


def _add_train_option(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """``--<name>`` for the TrainConfig field ``name``, of the field's type.

    Left out, the option is None and the field keeps its default: TrainConfig
    alone holds the defaults.
    """
    flag = "--" + name.replace("_", "-")
    default = TRAIN_DEFAULTS[name]
    if isinstance(default, bool):
        parser.add_argument(flag, action="store_true", default=None, **kwargs)
    else:
        parser.add_argument(flag, type=type(default), **kwargs)


def _given_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The parsed options named as fields of ``cls``, except those left unset (None)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def create_train_parser() -> argparse.ArgumentParser:
    """The parser of ``jobs/train.py``."""
    parser = argparse.ArgumentParser(
        prog="jobs/train.py",
        description="Train one Xception regime on a prepared data set with Ray Train.",
    )
    parser.add_argument("--data", required=True, help="prepared data set (folder or URI)")
    _add_train_option(parser, "regime", choices=REGIMES)
    parser.add_argument(
        "--trainable-blocks",
        type=int,
        help="finetune: Keras Xception blocks trained, from the end (0-14)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        help="imagenet | none | a .pth/.safetensors file | a checkpoint folder",
    )
    for name, kwargs in _TRAIN_OPTIONS.items():
        _add_train_option(parser, name, **kwargs)
    parser.add_argument(
        "--lr-batch-size",
        type=int,
        help=f"the global batch size --lr is for (default: --batch-size); {LR_SCALING_HELP}",
    )
    _add_feature_cache_option(parser)
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
        **{**_given_fields(args, TrainConfig), "data": resolve_path(args.data)},
        feature_store=join_path(storage, FEATURES_DIR),
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
    _add_sweep_location_options(parser)
    _add_search_space_options(parser.add_argument_group("search space"))
    _add_trial_options(parser.add_argument_group("each trial"))
    _add_resource_options(parser)
    _add_debug_option(parser)
    return parser


def _add_sweep_location_options(parser: argparse.ArgumentParser) -> None:
    """What the sweep runs on, where it goes, and whether it resumes and reports."""
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


def _add_search_space_options(space: argparse._ArgumentGroup) -> None:
    """What Tune draws each trial from."""
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


def _add_trial_options(run: argparse._ArgumentGroup) -> None:
    """How each trial trains, stops early, recovers and is confirmed."""
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int, help="global batch size")
    run.add_argument(
        "--lr-batch-size",
        type=int,
        help="the global batch size the --lr-range values are for (default: the preset's: "
        f"64 in full; --batch-size in demo and smoke); {LR_SCALING_HELP}",
    )
    run.add_argument("--image-size", type=int)
    run.add_argument("--compile", action="store_true", default=None, help=COMPILE_HELP)
    run.add_argument(
        "--bbox-crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="crop each image to its car's box first (default: the preset's; demo crops)",
    )
    run.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    run.add_argument(
        "--max-concurrent-trials", type=int, help="default: as many as the cluster's resources hold"
    )
    run.add_argument("--max-failures", type=int, help=MAX_FAILURES_HELP)
    run.add_argument(
        "--worker-start-timeout-s", type=float, metavar="S", help=WORKER_START_TIMEOUT_HELP
    )
    run.add_argument("--worker-start-tries", type=int, metavar="N", help=WORKER_START_TRIES_HELP)
    run.add_argument("--precise-bn-samples", type=int, help=PRECISE_BN_HELP)
    _add_feature_cache_option(run)
    run.add_argument("--seed", type=int)
    run.add_argument("--gradcam-images", type=int, help=GRADCAM_IMAGES_HELP)
    run.add_argument("--gradcam-measured", type=int, help=GRADCAM_MEASURED_HELP)
    run.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        help="retrain each regime's best configuration with K fresh seeds after the sweep "
        "(0: off; default: the preset's, 3 in full, 0 in demo and smoke)",
    )


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
    given = _given_fields(args, SweepConfig)
    sweep = create_sweep_config(
        args.preset,
        name,
        **{k: v for k, v in given.items() if k not in ("name", "preset", "data", "storage")},
        data=resolve_path(args.data) if args.data else None,
        storage=storage,
        lr_ranges=lr_ranges,
    )
    return SweepJob(name=name, resume=False, sweep=sweep, **common)


@dataclass(frozen=True)
class ReportJob:
    """Writing the report of a sweep."""

    sweep: str
    reports: str
    gradcam_images: int | None
    gradcam_measured: int | None = None


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
    parser.add_argument("--gradcam-images", type=int, help=GRADCAM_IMAGES_HELP)
    parser.add_argument("--gradcam-measured", type=int, help=GRADCAM_MEASURED_HELP)
    _add_debug_option(parser)
    args = parser.parse_args(argv)
    return ReportJob(
        sweep=resolve_path(args.sweep),
        reports=resolve_path(args.reports),
        gradcam_images=args.gradcam_images,
        gradcam_measured=args.gradcam_measured,
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
    # Options left out take PredictConfig's defaults.
    parser.add_argument("--batch-size", type=int, help="images per model call")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", dest="use_gpu", action="store_true", help="one GPU per actor")
    gpu.add_argument("--cpu", dest="use_gpu", action="store_false", help="CPU actors (default)")
    parser.add_argument("--cpus-per-actor", type=float, help="CPUs (torch threads) per CPU actor")
    parser.add_argument("--gradcam", type=int, metavar="N", help="also draw Grad-CAMs of N images")
    args = parser.parse_args(argv)
    paths = {name: resolve_path(getattr(args, name)) for name in ("model", "images", "out")}
    return PredictConfig(**{**_given_fields(args, PredictConfig), **paths})
