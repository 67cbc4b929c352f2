"""Means, differences of means and their 95 % confidence intervals (Student's t).

A cell (one norm at one batch size) is a few runs that differ only in their seed. Its mean gets the
one-sample t interval; a difference between two cells gets Welch's interval (unequal variances,
Welch–Satterthwaite degrees of freedom), treating the two cells' runs as independent samples. With
fewer than two runs in a cell the interval is undefined (NaN) and so is every verdict that needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


def _values(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (``low``/``high`` are NaN when undefined)."""

    value: float
    low: float
    high: float
    n: tuple[int, ...]

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.defined else math.nan

    def format(self, signed: bool = True, digits: int = 2) -> str:
        """``+1.23 [0.50, 1.96]``, or ``+1.23 [no CI: n=1]``."""
        sign = "+" if signed else ""
        if not math.isfinite(self.value):
            return "–"
        if not self.defined:
            return f"{self.value:{sign}.{digits}f} [no CI: n={'/'.join(map(str, self.n))}]"
        return f"{self.value:{sign}.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """The mean and its t interval: mean ± t(1-α/2, n-1) · s/√n."""
    x = _values(values)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, (0,))
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, (n,))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, (n,))


def diff_ci(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Estimate:
    """mean(a) − mean(b) with Welch's t interval."""
    x, y = _values(a), _values(b)
    n = (len(x), len(y))
    if min(n) == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    diff = float(x.mean() - y.mean())
    if min(n) < 2:
        return Estimate(diff, math.nan, math.nan, n)
    vx, vy = x.var(ddof=1) / n[0], y.var(ddof=1) / n[1]
    se = math.sqrt(vx + vy)
    if se == 0.0:  # identical runs in both cells: the interval collapses onto the difference
        return Estimate(diff, diff, diff, n)
    df = (vx + vy) ** 2 / (vx**2 / (n[0] - 1) + vy**2 / (n[1] - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return Estimate(diff, diff - half, diff + half, n)
