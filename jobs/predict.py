"""Classify images with a trained model as a Ray Data job, and write the answers as Parquet.

Run it as ``python jobs/predict.py --model reports/<name>/best --images DIR --out DIR``
or under ``ray job submit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cars.cli import exit_on_user_error, parse_predict_args
from cars.prediction.job import run_prediction


def main(argv: Sequence[str] | None = None) -> int:
    """Predict; print the counts, the accuracy where labels are known, and where it went."""
    with exit_on_user_error():
        outcome = run_prediction(parse_predict_args(argv))
    print(f"\n{outcome.summary()}")
    print(f"Predictions: {outcome.out}/predictions (read with pandas.read_parquet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
