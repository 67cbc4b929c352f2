"""The report's statistics against scipy and statsmodels on fixed data, and its power against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind

from src.report.stats import (
    CellModel,
    diff_ci,
    diff_ci_from_summary,
    holm,
    p_greater,
    p_less,
    power_one_sided,
    power_tost,
    seeds_needed,
    slope_weights,
    tost,
)

CELLS = {
    "bn@2": [30.0, 31.5, 30.2],
    "bn@32": [20.0, 20.4, 21.1, 20.6],
    "gn@2": [21.0, 22.2],
    "gn@32": [21.3, 20.8, 21.9],
}


def ols(cells: dict[str, list[float]]) -> tuple[sm.regression.linear_model.RegressionResultsWrapper, list[str]]:
    """The cell-means model fitted by statsmodels: one indicator column per cell, no intercept."""
    keys = list(cells)
    y = np.concatenate([cells[k] for k in keys])
    x = np.zeros((len(y), len(keys)))
    row = 0
    for j, key in enumerate(keys):
        x[row : row + len(cells[key]), j] = 1.0
        row += len(cells[key])
    return sm.OLS(y, x).fit(), keys


def test_pooled_contrast_equals_statsmodels_ols_t_test():
    model = CellModel(CELLS)
    fit, keys = ols(CELLS)
    assert model.df == 12 - 4 == fit.df_resid
    assert model.variance == pytest.approx(fit.scale)
    for weights in (
        {"bn@2": 1, "bn@32": -1},
        {"gn@2": 1, "gn@32": -1},
        {"bn@2": 1, "bn@32": -1, "gn@2": -1, "gn@32": 1},
    ):
        estimate = model.contrast(weights)
        r = np.array([[weights.get(k, 0.0) for k in keys]])
        test = fit.t_test(r)
        assert estimate.value == pytest.approx(float(test.effect[0]))
        assert estimate.se == pytest.approx(float(test.sd[0, 0]))
        assert estimate.df == test.df_denom == 8
        low, high = test.conf_int(alpha=0.05)[0]
        assert (estimate.low, estimate.high) == pytest.approx((low, high))
        # one-sided p-values are half the two-sided one on the matching side
        two_sided = float(test.pvalue)
        assert min(p_greater(estimate, 0.0), p_less(estimate, 0.0)) == pytest.approx(two_sided / 2)
        shifted = fit.t_test((r, np.array([1.0])))  # H0: contrast = 1
        assert min(p_greater(estimate, 1.0), p_less(estimate, 1.0)) == pytest.approx(float(shifted.pvalue) / 2)


def test_a_cell_with_one_run_adds_its_mean_but_no_degrees_of_freedom():
    model = CellModel({**CELLS, "ln@32": [25.0]})
    assert model.df == 8 and model.variance == pytest.approx(CellModel(CELLS).variance)
    assert model.contrast({"ln@32": 1, "bn@32": -1}).defined
    lonely = CellModel({"a": [1.0], "b": [2.0]})
    estimate = lonely.contrast({"a": 1, "b": -1})
    assert estimate.value == -1.0 and not estimate.defined and lonely.df == 0
    assert math.isnan(lonely.contrast({"a": 1, "missing": -1}).value)


def test_welch_interval_equals_scipy():
    x, y = CELLS["bn@2"], CELLS["bn@32"]
    welch = stats.ttest_ind(x, y, equal_var=False)
    estimate = diff_ci(x, y)
    assert (estimate.low, estimate.high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert estimate.df == pytest.approx(welch.df)


def test_welch_from_each_cells_summary_equals_welch_from_its_runs():
    """The recipe grid has each cell's mean, SD and n only: its interval is the same as from the runs."""
    x, y = [30.1, 29.4, 30.9, 31.2], [29.0, 29.8, 28.7, 30.6, 29.9]
    summary = [(float(np.mean(v)), float(np.std(v, ddof=1)), len(v)) for v in (x, y)]
    from_runs, from_summary = diff_ci(x, y), diff_ci_from_summary(*summary)
    assert (from_summary.value, from_summary.low, from_summary.high) == pytest.approx(
        (from_runs.value, from_runs.low, from_runs.high), abs=1e-12
    )
    assert from_summary.df == pytest.approx(from_runs.df) and from_summary.method == "welch"
    assert math.isnan(diff_ci_from_summary((1.0, 0.5, 1), (2.0, 0.5, 3)).low)  # one run: no interval


def test_tost_equals_statsmodels_ttost_ind_with_pooled_variance():
    x, y = [10.1, 10.4, 9.8, 10.0], [10.3, 10.2, 10.6, 10.5, 10.1]
    model = CellModel({"x": x, "y": y})  # two cells: the pooled variance is the two-sample one
    estimate = model.contrast({"x": 1, "y": -1})
    for low, high in ((-0.5, 0.5), (-0.2, 0.2), (-1.0, 0.1)):
        p, _, _ = ttost_ind(x, y, low, high, usevar="pooled")
        assert tost(estimate, low, high) == pytest.approx(p)


def test_holm_matches_the_step_down_rule():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_slope_contrast_is_the_least_squares_slope_of_the_means():
    batches = [2, 4, 8, 16, 32]
    cells = {b: [10.0 + 0.3 * math.log2(b) + e for e in (-0.2, 0.1, 0.15)] for b in batches}
    cells[8] = [12.0, 11.0]
    model = CellModel(cells)
    weights = dict(zip(batches, slope_weights([math.log2(b) for b in batches]), strict=True))
    estimate = model.contrast(weights)
    means = [np.mean(cells[b]) for b in batches]
    assert estimate.value == pytest.approx(np.polyfit(np.log2(batches), means, 1)[0])
    fit, keys = ols(cells)
    test = fit.t_test(np.array([[weights[k] for k in keys]]))
    assert estimate.se == pytest.approx(float(test.sd[0, 0]))


def simulate(effect: float, sd: float, n: int, cells: int, rng: np.random.Generator, reps: int) -> np.ndarray:
    """``reps`` studies of ``cells`` cells × n runs; cell 0 is shifted by ``effect``; returns the
    contrast cell0 − cell1 as (estimate, se, df) with the pooled variance of all cells."""
    data = rng.normal(0.0, sd, size=(reps, cells, n))
    data[:, 0, :] += effect
    means = data.mean(axis=2)
    variance = ((data - means[:, :, None]) ** 2).sum(axis=(1, 2)) / (cells * (n - 1))
    return means[:, 0] - means[:, 1], np.sqrt(variance * 2 / n), cells * (n - 1)


def test_seeds_needed_matches_a_simulation_of_the_pooled_test():
    effect, sd, cells, alpha = 0.6, 0.5, 10, 0.025
    needed = seeds_needed(lambda n: power_one_sided(effect, sd, 2.0, n, cells, alpha))
    assert needed is not None and needed >= 3
    rng = np.random.default_rng(14)
    for n in (needed - 1, needed):
        diff, se, df = simulate(effect, sd, n, cells, rng, 20000)
        simulated = float(np.mean(diff / se > stats.t.ppf(1 - alpha, df)))
        assert simulated == pytest.approx(power_one_sided(effect, sd, 2.0, n, cells, alpha), abs=0.015)
    assert (
        power_one_sided(effect, sd, 2.0, needed, cells, alpha)
        >= 0.8
        > power_one_sided(effect, sd, 2.0, needed - 1, cells, alpha)
    )


@pytest.mark.parametrize(("theta", "n"), [(0.1, 6), (0.2, 12), (0.0, 3)])
def test_tost_power_matches_a_simulation(theta, n):
    margin, sd, cells, alpha = 0.5, 0.4, 4, 0.025
    rng = np.random.default_rng(7)
    diff, se, df = simulate(theta, sd, n, cells, rng, 20000)
    critical = stats.t.ppf(1 - alpha, df)
    simulated = float(np.mean(((diff + margin) / se > critical) & ((margin - diff) / se > critical)))
    assert simulated == pytest.approx(power_tost(theta, margin, sd, 2.0, n, cells, alpha), abs=0.02)


def test_per_cell_variance_contrast_of_two_cells_equals_statsmodels_welch():
    """The verdicts' interval: Welch–Satterthwaite df and se, as statsmodels' unequal-variance t test."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    model = CellModel(CELLS)
    estimate = model.welch_contrast({"bn@2": 1, "bn@32": -1})
    compare = CompareMeans(DescrStatsW(np.array(CELLS["bn@2"])), DescrStatsW(np.array(CELLS["bn@32"])))
    low, high = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    _, _, df = compare.ttest_ind(usevar="unequal")
    assert (estimate.low, estimate.high) == pytest.approx((low, high))
    assert estimate.df == pytest.approx(df)
    assert estimate.method == "welch"


def test_per_cell_variance_contrast_of_four_cells_has_the_satterthwaite_df():
    """A difference of differences: se² = Σ c²s²/n, df = (Σ v)² / Σ v²/(n − 1), written out by hand here."""
    weights = {"bn@2": 1, "bn@32": -1, "gn@2": -1, "gn@32": 1}
    estimate = CellModel(CELLS).welch_contrast(weights)
    parts = {k: np.var(CELLS[k], ddof=1) / len(CELLS[k]) for k in weights}
    df = sum(parts.values()) ** 2 / sum(v**2 / (len(CELLS[k]) - 1) for k, v in parts.items())
    value = sum(c * np.mean(CELLS[k]) for k, c in weights.items())
    half = stats.t.ppf(0.975, df) * math.sqrt(sum(parts.values()))
    assert estimate.value == pytest.approx(value)
    assert estimate.df == pytest.approx(df)
    assert (estimate.low, estimate.high) == pytest.approx((value - half, value + half))


def test_per_cell_variance_contrast_needs_two_runs_in_every_cell():
    model = CellModel({"a": [1.0], "b": [2.0, 2.5]})
    estimate = model.welch_contrast({"a": 1, "b": -1})
    assert estimate.value == pytest.approx(-1.25) and not estimate.defined
    assert math.isnan(model.welch_contrast({"a": 1, "missing": -1}).value)
