"""What a claim is made of: the cells it compares and the tests of contrasts over them.

A :class:`Cell` is every run whose columns equal given values; a :class:`Test` is one pre-specified test
of a contrast θ = Σ weights·m(cell) against a bound. Claim kinds (:mod:`src.report.kinds`) build tests
from a claim's spec; :class:`src.report.claims.ClaimEvaluator` estimates and decides them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from src.report.stats import NO_ESTIMATE, Estimate

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
REVERSED = "reversed"
UNDECIDED = "undecided"
INCONCLUSIVE = UNDECIDED  # the name earlier reports used
NOT_ASSESSABLE = "not assessable"
NO_DATA = "no data"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNDECIDED, NOT_ASSESSABLE, NO_DATA)
SYMBOL = {"direction": ">", "at_least": "≥", "at_most": "≤", "within": "within ±"}


def as_text(value: Any) -> str:
    """A cell value as compared: text, with whole floats as integers (a column with gaps is float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Cell:
    """The runs a claim compares: every run whose columns equal ``values`` (column → value; norm, batch,
    epochs, model, dataset, or any recorded config key such as ``optim.warmup_epochs``).

    ``Cell.of(norm="gn", batch=8)`` is today's (norm, batch) cell, shown ``gn@8``; other columns are
    shown after it, e.g. ``gn@8 epochs=24``. Values are compared as text (:func:`as_text`), so ``24``
    matches ``"24"`` and ``24.0``.
    """

    values: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, mapping: dict[str, Any] | None = None, **columns: Any) -> Cell:
        merged = {**(mapping or {}), **columns}
        values = {str(k): int(v) if k == "batch" else as_text(v) for k, v in merged.items()}
        return cls(tuple(sorted(values.items())))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.values)

    def get(self, column: str) -> Any:
        return dict(self.values).get(column)

    @property
    def norm(self) -> str | None:
        return self.get("norm")

    @property
    def batch(self) -> int | None:
        return self.get("batch")

    def within(self, other: Cell) -> bool:
        """Whether ``other`` (a design cell) has every column value of this cell."""
        values = dict(other.values)
        return all(column in values and values[column] == value for column, value in self.values)

    def mask(self, runs: pd.DataFrame) -> pd.Series:
        """The runs of this cell (none when ``runs`` lacks one of its columns)."""
        keep = pd.Series(True, index=runs.index)
        for column, value in self.values:
            if column not in runs:
                return pd.Series(False, index=runs.index)
            keep &= runs[column].map(as_text) == as_text(value)
        return keep

    def __str__(self) -> str:
        values = dict(self.values)
        head = f"{values.pop('norm')}@{values.pop('batch')}" if {"norm", "batch"} <= set(values) else ""
        rest = " ".join(f"{k}={v}" for k, v in values.items())
        return " ".join(part for part in (head, rest) if part)


@dataclass
class Test:
    """One pre-specified test of a contrast θ = Σ weights·m(cell) against ``bound``."""

    label: str
    test: str  # direction | at_least | at_most | within
    bound: float
    weights: dict[Cell, float]
    estimate: Estimate = NO_ESTIMATE  # per-cell variances, Welch–Satterthwaite df: the verdict's interval
    pooled: Estimate | None = None  # the pooled-variance model: a robustness column
    p: float = math.nan  # small: the claim is shown (Holm-adjusted within its claim: ``p_holm``)
    p_against: float = math.nan  # small: the claim is contradicted
    verdict: str = NO_DATA
    pooled_verdict: str = ""
    seeds: int | None = None
    seeds_note: str = ""
    # a decided test: the seeds per cell at which it would survive Holm across the study's claims (at the
    # Bonferroni level, which Holm never asks more than), for when that correction makes its claim undecided
    seeds_if_corrected: int | None = None

    @property
    def claim(self) -> str:
        if self.test == "direction":
            return "> 0"
        return f"{SYMBOL[self.test]} {self.bound:g}" if self.test != "within" else f"within ±{self.bound:g}"
