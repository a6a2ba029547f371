"""Prepare a data set from Stanford Cars (`--source DIR`) or drawn cars (`--synthetic`)."""

from __future__ import annotations

import argparse
import sys
import traceback

from cars.data import (
    MAX_SIDE,
    VAL_FRACTION,
    DataError,
    SyntheticCars,
    prepare_dataset,
    prepare_synthetic,
)
from cars.paths import resolve_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", help="Stanford Cars folder (devkit or all-in-one layout)")
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
    synthetic = parser.add_argument_group("with --synthetic")
    synthetic.add_argument("--num-classes", type=int, default=10)
    synthetic.add_argument("--train-per-class", type=int, default=30)
    synthetic.add_argument("--test-per-class", type=int, default=10)
    synthetic.add_argument("--task", choices=("target", "source"), default="target")
    synthetic.add_argument("--keep-source", metavar="DIR", help="also keep the generated folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Prepare the set, print what it holds and where it went; 2 on bad input."""
    a = parse_args(argv)
    common = {"max_side": a.max_side, "val_fraction": a.val_fraction}
    common |= {"force": a.force, "progress": not a.no_progress}
    try:
        if a.synthetic:
            cars = SyntheticCars(
                a.num_classes, a.train_per_class, a.test_per_class, seed=a.seed, task=a.task
            )
            keep = a.keep_source and resolve_path(a.keep_source)
            result = prepare_synthetic(resolve_path(a.out), cars, source_dir=keep, **common)
        else:
            source, out = resolve_path(a.source), resolve_path(a.out)
            result = prepare_dataset(source, out, strict=a.strict, seed=a.seed, **common)
    except (DataError, OSError) as error:
        if a.debug:
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{result.summary()}\nprepared data set written to {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
