"""Write the report of a finished or interrupted sweep to reports/<sweep name>/.

Run it as ``python jobs/report.py --sweep runs/<name>`` or under ``ray job submit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cars.cli import exit_on_user_error, parse_report_args
from cars.report import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report; print where it went and what it lacks."""
    with exit_on_user_error(argv):
        job = parse_report_args(argv)
        outcome = write_report(job.sweep, job.reports, job.gradcam_images, job.gradcam_measured)
    for missing in outcome.missing:
        print(f"missing: {missing}")
    print(f"Report: {outcome.path}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
