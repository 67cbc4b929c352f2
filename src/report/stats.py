"""Estimates, intervals and tests for contrasts between cells (one norm at one batch size).

A cell is a few runs that differ only in their seed. Two estimates of a contrast
``θ = Σ_i c_i μ_i`` of the cell means ``μ_i`` are offered:

- **Per-cell variances (the verdicts).** Each cell keeps its own variance s_i² (cells of one study differ:
  a long schedule's seeds agree more than a short one's, batch 2 scatters more than batch 32), so
  ``θ̂ = Σ c_i ȳ_i`` has ``se² = Σ v_i`` with ``v_i = c_i² s_i² / n_i`` and the Welch–Satterthwaite
  degrees of freedom ``df = (Σ v_i)² / Σ v_i² / (n_i − 1)``; the interval is ``θ̂ ± t(1 − α/2, df) · se``.
  For two cells this is Welch's t test (checked against statsmodels' ``ttest_ind(usevar="unequal")``).
  A cell with one run has no variance: no interval (run more seeds).
- **Pooled (a robustness column).** The cell-means linear model ``y_rj = μ_i(r) + ε_rj`` over every cell
  of the study with one common within-cell variance σ²: ``s² = Σ_i Σ_j (y_ij − ȳ_i)² / (N − k)`` on
  ``df = N − k`` (N runs, k cells), ``se = s · √(Σ c_i² / n_i)``. Where the two readings disagree, the
  cells' variances differ and the report says so.

Tests are one-sided t tests on the contrast: ``H0: θ ≤ b`` is rejected at level α when
``(θ̂ − b)/se > t(1 − α, df)``, i.e. when the lower end of the ``1 − 2α`` interval lies above ``b``.
An equivalence claim ``|θ| ≤ δ`` is a TOST (two one-sided tests, Schuirmann 1987): both
``H0: θ ≤ −δ`` and ``H0: θ ≥ δ`` rejected at α, i.e. the ``1 − 2α`` interval inside ``[−δ, δ]``; its
p-value is the larger of the two. Holm's step-down correction comes from statsmodels. The
distribution functions are scipy's (:mod:`scipy.stats`); nothing here integrates a density by hand.

Power (:func:`power_one_sided`, :func:`seeds_needed`): at ``n`` seeds in each of ``k`` cells the
statistic ``(θ̂ − b)/se`` has a noncentral t distribution with ``df = k(n − 1)`` and noncentrality
``(θ − b)/(σ √(Σ c_i² / n))``; power is its probability beyond the critical value. For a TOST it is
the probability that both tests reject, integrated over the chi-square law of the pooled variance
(:func:`power_tost`). Both are checked against simulations in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests

LEVEL = 0.95
ALPHA = 0.05  # the level of each one-sided test of an equivalence (TOST) claim
POWER = 0.8
MAX_SEEDS = 200


def _values(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (``low``/``high`` are NaN when undefined).

    ``se`` and ``df`` are the standard error and degrees of freedom behind the interval, ``level``
    its coverage, ``method`` how it was computed (``pooled``, ``welch`` or ``one-sample``)."""

    value: float
    low: float
    high: float
    n: tuple[int, ...]
    se: float = math.nan
    df: float = math.nan
    level: float = LEVEL
    method: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.defined else math.nan

    def at_level(self, level: float) -> Estimate:
        """The same estimate with a ``level`` interval (same se and df)."""
        if not (math.isfinite(self.se) and math.isfinite(self.df) and self.df > 0):
            return Estimate(self.value, math.nan, math.nan, self.n, self.se, self.df, level, self.method)
        half = float(stats.t.ppf(0.5 + level / 2, self.df) * self.se)
        return Estimate(self.value, self.value - half, self.value + half, self.n, self.se, self.df, level, self.method)

    def format(self, signed: bool = True, digits: int = 2) -> str:
        """``+1.23 [0.50, 1.96]``, or ``+1.23 [no CI: n=1]``."""
        sign = "+" if signed else ""
        if not math.isfinite(self.value):
            return "–"
        if not self.defined:
            why = f"df={self.df:g}" if self.method == "pooled" else f"n={'/'.join(map(str, self.n))}"
            return f"{self.value:{sign}.{digits}f} [no CI: {why}]"
        return f"{self.value:{sign}.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan, (0,))


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """The mean and its one-sample t interval: mean ± t(1 − α/2, n − 1) · s/√n."""
    x = _values(values)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, (0,))
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, (n,), method="one-sample")
    se = float(x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, math.nan, math.nan, (n,), se, n - 1, level, "one-sample").at_level(level)


def diff_ci(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Estimate:
    """mean(a) − mean(b) with Welch's t interval (:func:`diff_ci_from_summary` of the two cells; equal to
    scipy's ``ttest_ind(equal_var=False)``, tests/test_report_stats.py)."""
    x, y = _values(a), _values(b)
    if min(len(x), len(y)) == 0:
        return Estimate(math.nan, math.nan, math.nan, (len(x), len(y)))
    return diff_ci_from_summary(_summary(x), _summary(y), level)


def _summary(x: np.ndarray) -> tuple[float, float, int]:
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan, len(x)


def diff_ci_from_summary(a: tuple[float, float, int], b: tuple[float, float, int], level: float = LEVEL) -> Estimate:
    """:func:`diff_ci` from each cell's (mean, SD, n) alone: mean_a − mean_b ± t(df) · se with
    se² = s_a²/n_a + s_b²/n_b and Welch–Satterthwaite's df = se⁴ / Σ (s²/n)² / (n − 1)."""
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = a, b
    n = (int(n_a), int(n_b))
    diff = float(mean_a - mean_b)
    if min(n) < 2 or not (math.isfinite(sd_a) and math.isfinite(sd_b)):
        return Estimate(diff, math.nan, math.nan, n, method="welch")
    parts = (sd_a**2 / n_a, sd_b**2 / n_b)
    se = math.sqrt(sum(parts))
    if se == 0.0:
        return Estimate(diff, diff, diff, n, 0.0, math.inf, level, "welch")
    df = se**4 / (parts[0] ** 2 / (n_a - 1) + parts[1] ** 2 / (n_b - 1))
    return Estimate(diff, math.nan, math.nan, n, se, df, level, "welch").at_level(level)


class CellModel:
    """The cell-means linear model of a study: one mean per cell, one pooled within-cell variance.

    ``cells`` maps a cell key to its runs' values; cells without a finite value are left out.
    ``variance`` is s², ``df`` is N − k (runs minus cells); both NaN/0 when no cell has two runs.
    """

    def __init__(self, cells: Mapping[object, Iterable[float]]):
        self.values = {key: _values(v) for key, v in cells.items()}
        self.values = {key: v for key, v in self.values.items() if len(v)}
        self.n = {key: len(v) for key, v in self.values.items()}
        self.means = {key: float(v.mean()) for key, v in self.values.items()}
        self.runs = sum(self.n.values())
        self.df = self.runs - len(self.values)
        squares = sum(float(((v - v.mean()) ** 2).sum()) for v in self.values.values())
        self.variance = squares / self.df if self.df > 0 else math.nan

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance) if math.isfinite(self.variance) else math.nan

    @property
    def cell_variances(self) -> dict[object, float]:
        """s_i² of each cell (NaN for a cell of one run)."""
        return {key: float(v.var(ddof=1)) if len(v) > 1 else math.nan for key, v in self.values.items()}

    def welch_contrast(self, weights: Mapping[object, float], level: float = LEVEL) -> Estimate:
        """Σ c_i ȳ_i with per-cell variances: se² = Σ c_i² s_i²/n_i, Welch–Satterthwaite df
        (Σ v_i)² / Σ v_i²/(n_i − 1), and a ``level`` t interval (method ``welch``)."""
        used = {key: float(c) for key, c in weights.items() if c != 0}
        n = tuple(self.n.get(key, 0) for key in used)
        if not used or any(key not in self.means for key in used):
            return Estimate(math.nan, math.nan, math.nan, n, method="welch")
        value = sum(c * self.means[key] for key, c in used.items())
        if any(self.n[key] < 2 for key in used):
            return Estimate(value, math.nan, math.nan, n, method="welch")
        variances = self.cell_variances
        parts = {key: c**2 * variances[key] / self.n[key] for key, c in used.items()}
        total = sum(parts.values())
        if total == 0.0:  # identical runs in every cell: the interval collapses onto the estimate
            return Estimate(value, value, value, n, 0.0, math.inf, level, "welch")
        df = total**2 / sum(v**2 / (self.n[key] - 1) for key, v in parts.items() if v > 0)
        return Estimate(value, math.nan, math.nan, n, math.sqrt(total), df, level, "welch").at_level(level)

    def contrast(self, weights: Mapping[object, float], level: float = LEVEL) -> Estimate:
        """Σ c_i ȳ_i with the pooled se = s·√(Σ c_i²/n_i) and a ``level`` t interval on N − k df."""
        used = {key: float(c) for key, c in weights.items() if c != 0}
        n = tuple(self.n.get(key, 0) for key in used)
        if not used or any(key not in self.means for key in used):
            return Estimate(math.nan, math.nan, math.nan, n, method="pooled")
        value = sum(c * self.means[key] for key, c in used.items())
        if not (self.df > 0 and math.isfinite(self.variance)):
            return Estimate(value, math.nan, math.nan, n, math.nan, self.df, level, "pooled")
        se = self.sd * math.sqrt(sum(c**2 / self.n[key] for key, c in used.items()))
        if se == 0.0:
            return Estimate(value, value, value, n, 0.0, self.df, level, "pooled")
        return Estimate(value, math.nan, math.nan, n, se, self.df, level, "pooled").at_level(level)


def p_greater(estimate: Estimate, bound: float) -> float:
    """One-sided p-value of ``H0: θ ≤ bound`` (small when θ is clearly above ``bound``)."""
    if not (math.isfinite(estimate.se) and math.isfinite(estimate.df) and estimate.df > 0):
        return math.nan
    if estimate.se == 0.0:
        return 0.0 if estimate.value > bound else 1.0
    return float(stats.t.sf((estimate.value - bound) / estimate.se, estimate.df))


def p_less(estimate: Estimate, bound: float) -> float:
    """One-sided p-value of ``H0: θ ≥ bound`` (small when θ is clearly below ``bound``)."""
    if not (math.isfinite(estimate.se) and math.isfinite(estimate.df) and estimate.df > 0):
        return math.nan
    if estimate.se == 0.0:
        return 0.0 if estimate.value < bound else 1.0
    return float(stats.t.cdf((estimate.value - bound) / estimate.se, estimate.df))


def tost(estimate: Estimate, low: float, high: float) -> float:
    """TOST p-value for ``low < θ < high``: the larger of the two one-sided p-values."""
    return max(p_greater(estimate, low), p_less(estimate, high))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (statsmodels' ``multipletests(method="holm")``); NaN stays NaN."""
    finite = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    adjusted = [math.nan] * len(pvalues)
    if finite:
        corrected = multipletests([pvalues[i] for i in finite], alpha=alpha, method="holm")[1]
        for i, p in zip(finite, corrected, strict=True):
            adjusted[i] = float(p)
    return adjusted


def slope_weights(xs: Sequence[float]) -> list[float]:
    """Weights c_i with Σ c_i ȳ_i = the least-squares slope of the means ȳ_i against x_i:
    ``c_i = (x_i − x̄) / Σ_j (x_j − x̄)²``."""
    x = np.asarray(xs, dtype=float)
    centred = x - x.mean()
    return list(centred / float((centred**2).sum()))


def power_one_sided(shift: float, sd: float, factor: float, n: int, cells: int, alpha: float) -> float:
    """Power of a one-sided t test of a contrast whose true value is ``shift`` beyond its bound.

    ``factor`` = Σ c_i² (so se = sd·√(factor/n) at n runs per cell), ``cells`` the number of cells of
    the model (df = cells·(n − 1)): P(T > t(1 − α, df)) for T ~ noncentral t(df, shift/se)."""
    df = cells * (n - 1)
    if df <= 0 or not (sd > 0):
        return math.nan
    ncp = shift / (sd * math.sqrt(factor / n))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, ncp))


def power_tost(theta: float, margin: float, sd: float, factor: float, n: int, cells: int, alpha: float) -> float:
    """Power of the TOST of ``|θ| < margin`` at a true contrast ``theta``.

    Both one-sided tests reject when ``−margin + c·se < θ̂ < margin − c·se`` (c = t(1 − α, df)), where
    θ̂ ~ N(θ, σ²u²) with u = √(factor/n) and se = s·u, s² ~ σ² χ²(df)/df independent of θ̂. The power is
    that normal probability averaged over the chi-square law of s², integrated with scipy's ``quad``."""
    df = cells * (n - 1)
    if df <= 0 or not (sd > 0):
        return math.nan
    u = math.sqrt(factor / n)
    critical = float(stats.t.ppf(1 - alpha, df))

    def given(q: float) -> float:
        half = margin - critical * sd * math.sqrt(q / df) * u
        if half <= 0:
            return 0.0
        spread = sd * u
        inside = stats.norm.cdf((half - theta) / spread) - stats.norm.cdf((-half - theta) / spread)
        return float(inside * stats.chi2.pdf(q, df))

    # s shrinks the acceptance band to nothing beyond q_max: integrate up to it
    q_max = df * (margin / (critical * sd * u)) ** 2
    value, _ = integrate.quad(given, 0.0, q_max, limit=200)
    return min(1.0, max(0.0, value))


def seeds_needed(power_at: Callable[[int], float], target: float = POWER, most: int = MAX_SEEDS) -> int | None:
    """The smallest n in 2..most with ``power_at(n) ≥ target``; None when none is."""
    for n in range(2, most + 1):
        power = power_at(n)
        if math.isfinite(power) and power >= target:
            return n
    return None
