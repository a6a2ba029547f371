"""Prepare a data set from a copy of Stanford Cars (`--source DIR`) or drawn cars (`--synthetic`).

The copy may be in any layout users have (see README, "Preparing Stanford Cars").
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from cars.data import DataError
from cars.prepare_cli import parse_prepare_args, run_prepare


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the set, print what it holds and where it went; 2 on bad input."""
    args = parse_prepare_args(argv)
    try:
        result = run_prepare(args)
    except (DataError, OSError) as error:
        if args.debug:
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{result.summary()}\nprepared data set written to {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
