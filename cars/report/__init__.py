"""The report of a sweep: tables, learning curves, test scores and Grad-CAM."""

from cars.report.writer import ReportOutcome, write_report

__all__ = ["ReportOutcome", "write_report"]
