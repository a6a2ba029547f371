"""The command line of ``jobs/prepare.py``, parsed and run.

Apart from :mod:`cars.cli` because preparing data needs only the data layer:
``jobs/prepare.py`` starts without importing torch or Ray.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cars.data import (
    LAYOUTS,
    MAX_SIDE,
    VAL_FRACTION,
    PrepareResult,
    SyntheticCars,
    prepare_dataset,
    prepare_synthetic,
)
from cars.paths import resolve_path


def create_prepare_parser() -> argparse.ArgumentParser:
    """The parser of ``jobs/prepare.py``."""
    parser = argparse.ArgumentParser(
        description="Prepare a data set from a copy of Stanford Cars (or another set in "
        "class folders) with --source, or from drawn cars with --synthetic."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", help=f"a copy's folder, in any layout ({', '.join(LAYOUTS)})")
    what.add_argument("--synthetic", action="store_true", help="generate synthetic cars")
    parser.add_argument("--out", required=True, help="folder (relative: to the project) or URI")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE, help="longest stored side (px)")
    parser.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="train share held out"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the hold-out (and drawing)")
    parser.add_argument("--strict", action="store_true", help="any bad image is an error")
    parser.add_argument("--force", action="store_true", help="replace an existing set")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    source = parser.add_argument_group("with --source")
    source.add_argument(
        "--layout", choices=list(LAYOUTS), help="read this layout (default: the one found)"
    )
    source.add_argument(
        "--test-labels",
        metavar="FILE",
        help="the devkit's cars_test_annos_withlabels.mat, where it is not beside the copy",
    )
    source.add_argument("--name", help="the set's name (default: the source folder's name)")
    synthetic = parser.add_argument_group("with --synthetic")
    synthetic.add_argument("--num-classes", type=int, default=10)
    synthetic.add_argument("--train-per-class", type=int, default=30)
    synthetic.add_argument("--test-per-class", type=int, default=10)
    synthetic.add_argument("--task", choices=("target", "source"), default="target")
    synthetic.add_argument("--keep-source", metavar="DIR", help="also keep the generated folder")
    return parser


def parse_prepare_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``jobs/prepare.py``."""
    return create_prepare_parser().parse_args(argv)


def run_prepare(a: argparse.Namespace) -> PrepareResult:
    """Prepare the set the command line asks for; paths resolve against the project.

    Raises:
        DataError: bad input, as :func:`cars.data.prepare_dataset` says.
    """
    common = {"max_side": a.max_side, "val_fraction": a.val_fraction}
    common |= {"force": a.force, "progress": not a.no_progress}
    if a.synthetic:
        cars = SyntheticCars(
            a.num_classes, a.train_per_class, a.test_per_class, seed=a.seed, task=a.task
        )
        keep = a.keep_source and resolve_path(a.keep_source)
        return prepare_synthetic(resolve_path(a.out), cars, source_dir=keep, **common)
    labels = a.test_labels and resolve_path(a.test_labels)
    reading = {"layout": a.layout, "test_labels": labels, "name": a.name, "strict": a.strict}
    return prepare_dataset(
        resolve_path(a.source), resolve_path(a.out), seed=a.seed, **reading, **common
    )
