"""Tables and plots compare like with like: runs that differ in a design column a claim names (``epochs``,
``standardize_weights``, …) are never pooled into one (norm, batch) cell of a table.

A study that varies such a column within one dataset × model (small_batch_cifar10: 8 and 16 epochs, with
and without weight standardization) gets one table and one plot panel per setting: its runs' ``model``
label is extended, for the tables and figures only, as ``resnet8 · epochs=16 · standardize_weights=True``.
Claims read the runs unchanged (their cells name the columns themselves).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from src.report.cells import as_text

SLICE_KEY = ["dataset", "model"]
CELL_KEY = ["norm", "batch"]
ALWAYS = ("epochs",)  # a schedule length is always part of the design


def design_columns(runs: pd.DataFrame, named: Iterable[str]) -> list[str]:
    """The columns among ``epochs`` and ``named`` that take more than one value inside a dataset × model
    slice (and so would pool different settings into one cell)."""
    candidates = [c for c in dict.fromkeys([*ALWAYS, *named]) if c in runs and c not in SLICE_KEY + CELL_KEY]
    varying = []
    for column in candidates:
        values = runs[column].map(as_text)
        if (values.groupby([runs[k] for k in SLICE_KEY]).nunique() > 1).any():
            varying.append(column)
    return varying


def by_setting(runs: pd.DataFrame, named: Iterable[str]) -> pd.DataFrame:
    """``runs`` with ``model`` extended by each varying design column's value (a copy; unchanged when
    nothing varies). A column a run's config does not have (``norm.layer.min_group_size`` for bn) is left
    out of its label: its runs are still a slice of their own."""
    columns = design_columns(runs, named)
    if not columns or runs.empty:
        return runs
    labelled = runs.copy()

    def label(row: pd.Series) -> str:
        return "".join(f" · {c}={as_text(row[c])}" for c in columns if not _missing(row[c]))

    labelled["model"] = labelled["model"].astype(str) + labelled[columns].apply(label, axis=1)
    return labelled


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
