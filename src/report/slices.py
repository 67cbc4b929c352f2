"""Tables and plots compare like with like: runs that differ in a design column a claim names (``epochs``,
``standardize_weights``, …) are never pooled into one (norm, batch) cell of a table.

A study that varies such a column within one dataset × model (small_batch_cifar10: 8 and 16 epochs, with
and without weight standardization) gets one table per setting. :func:`by_setting` labels each run's
setting in a ``slice`` column, ``resnet8 · epochs=16 · standardize_weights=True`` (the model, then each
varying design column), which the markdown tables are headed by; ``model`` stays the plain model name and
every design column keeps its own column, so ``summary.csv`` is tidy. Claims read the runs unchanged
(their cells name the columns themselves).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from src.report.cells import as_text

SLICE_KEY = ["dataset", "model"]
CELL_KEY = ["norm", "batch"]
ALWAYS = ("epochs",)  # a schedule length is always part of the design
SLICE = "slice"  # the column naming a run's setting: the model and each varying design column


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
    """A copy of ``runs`` with ``slice``: the model, then ``c=value`` for each varying design column (the
    plain model name when nothing varies). A column a run's config does not have
    (``norm.layer.min_group_size`` for bn) is left out of its label: its runs are still a slice of their own."""
    labelled = runs.copy()
    if runs.empty:
        labelled[SLICE] = pd.Series(dtype=str)
        return labelled
    columns = design_columns(runs, named)

    def label(row: pd.Series) -> str:
        return "".join(f" · {c}={as_text(row[c])}" for c in columns if not missing(row[c]))

    labels = labelled[columns].apply(label, axis=1) if columns else ""
    labelled[SLICE] = labelled["model"].astype(str) + labels
    return labelled


def natural_key(labels: Any) -> list[Any]:
    """Sort key with numbers compared as numbers (``epochs=8`` before ``epochs=16``); ``labels`` is one
    label or a tuple of them. Numbers sort before words in the same place."""
    labels = labels if isinstance(labels, tuple) else (labels,)
    key: list[Any] = []
    for label in labels:
        for part in re.split(r"(\d+(?:\.\d+)?)", str(label)):
            if part:
                key.append((0, float(part), "") if _number(part) else (1, 0.0, part))
    return key


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def missing(value: object) -> bool:
    """None, NaN or pandas' NA: a config key a run does not have."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
