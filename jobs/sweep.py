"""The main job: sweep the three Xception regimes with Ray Tune and write the report.

Without --data it runs the built-in demo on synthetic cars. Run it as
``python jobs/sweep.py`` or ``ray job submit -- python jobs/sweep.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cars.cli import exit_on_user_error, parse_sweep_args
from cars.study import run_study


def main(argv: Sequence[str] | None = None) -> int:
    """Run or resume the sweep; print where its results and report went."""
    with exit_on_user_error(argv):
        outcome = run_study(parse_sweep_args(argv))
    print(f"\nSweep results and checkpoints: {outcome.sweep_path}")
    if outcome.report_path:
        print(f"Report: {outcome.report_path}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
