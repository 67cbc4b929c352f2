"""Reports from run records: ``python -m src.report multirun/<study> [more dirs]``.

Reads only ``result.json`` files (never training code) and writes tables under ``results/<study>/``.
"""

from src.report.load import load_runs
from src.report.tables import pivot_table, summarize

__all__ = ["load_runs", "pivot_table", "summarize"]
