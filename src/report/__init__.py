"""Reports from run records: ``python -m src.report multirun/<study> [more dirs]``.

Reads only ``result.json`` files (never training code) and writes tables, plots and claim verdicts
under ``results/<study>/``, plus the index ``results/README.md``. In a notebook, :func:`load_runs` gives
the runs as one tidy DataFrame (docs/notebook.md).
"""

from src.report.claims import evaluate_claims
from src.report.load import load_run_set, load_runs, mixture_weights, setting_columns
from src.report.stats import diff_ci, mean_ci
from src.report.tables import pivot_table, summarize

__all__ = [
    "diff_ci",
    "evaluate_claims",
    "load_run_set",
    "load_runs",
    "mean_ci",
    "mixture_weights",
    "pivot_table",
    "setting_columns",
    "summarize",
]
