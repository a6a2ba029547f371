"""One training run of an Xception regime on Ray Train, without Tune.

Run it as ``python jobs/train.py --data DIR ...`` or under ``ray job submit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cars.cli import exit_on_user_error, parse_train_args
from cars.config import METRIC, TIE_BREAK
from cars.study import run_train_job


def main(argv: Sequence[str] | None = None) -> int:
    """Train; print where the result and its checkpoints went."""
    with exit_on_user_error(argv):
        job = parse_train_args(argv)
        result = run_train_job(job)
    if result.error is not None:
        print(f"error: the run failed: {result.error}", file=sys.stderr)
        return 1
    print(f"\nResult: {result.path}")
    last, best = result.run.latest, result.run.best
    print(f"Last checkpoint: {last.location if last else 'none'}")
    if best is not None:
        print(f"Best checkpoint ({METRIC}, then {TIE_BREAK}): {best.location}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
