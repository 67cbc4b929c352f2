"""A recipe pilot's figure: validation error by norm, one marker and colour per value of one factor.

:func:`factor_by_norm_figure` draws one panel per norm on a shared y axis (at most three a row,
:func:`src.report.figure.panel_grid`); in each panel one column per value of the factor
(``dataset.augment``: the crop's padding), the single runs (seeds) as small dots and their mean ± SD as
a large marker. It returns the figure as PNG and SVG bytes (the SVG without a
date and with fixed element ids, so the same runs give the same file).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from src.report.figure import MARKERS, SHORT_VALUES, panel_grid, save
from src.report.norm_info import NormCatalog

COLOURS = ["#4c4c4c", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22"]
VALUE_LABELS = {  # what a value does, for the legend (src/data/augment.py)
    "crop_flip": "a black border",
    "crop_flip_mean": "a mean border, zero after normalization",
    "crop_flip_reflect": "a mirrored border",
}
SHORT = SHORT_VALUES  # the x axis
TITLES = {"dataset.augment": "crop padding"}


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def factor_by_norm_figure(
    runs: pd.DataFrame,
    factor: str,
    study: str = "",
    base: dict[str, str] | None = None,
    catalog: NormCatalog | None = None,
    metric: str = "val_error",
) -> tuple[bytes, bytes]:
    """PNG and SVG: ``metric`` of every run in ``runs`` (one recipe per norm and value of ``factor``:
    the caller keeps the other factors at one value), a panel per norm, shared y axis; per value of
    ``factor`` a colour and marker, seed dots and the mean ± SD over seeds."""
    catalog = catalog or NormCatalog.from_runs(runs)
    norms = catalog.sorted(runs["norm"])
    values = sorted({str(v) for v in runs[factor]}, key=_sort_key)
    style = {v: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, v in enumerate(values)}
    figure, axes = panel_grid(len(norms), width=2.3, height=3.4)
    for axis, norm in zip(axes, norms, strict=True):
        part = runs[runs["norm"] == norm]
        for i, value in enumerate(values):
            errors = pd.to_numeric(part.loc[part[factor].astype(str) == value, metric], errors="coerce").dropna()
            if errors.empty:
                continue
            colour, marker = style[value]
            jitter = np.linspace(-0.15, 0.15, len(errors)) if len(errors) > 1 else np.zeros(1)
            axis.scatter(i + jitter, errors, s=14, color=colour, marker=marker, alpha=0.45, linewidths=0, zorder=2)
            sd = float(errors.std(ddof=1)) if len(errors) > 1 else 0.0
            axis.errorbar(
                i + 0.3,
                errors.mean(),
                yerr=sd,
                color=colour,
                marker=marker,
                markersize=8,
                capsize=3,
                markeredgecolor="k",
                markeredgewidth=0.7,
                zorder=3,
            )
            axis.annotate(
                f"{errors.mean():.1f}", (i + 0.3, errors.mean()), xytext=(6, -3), textcoords="offset points", fontsize=7
            )
        axis.set_xticks(range(len(values)))
        axis.set_xticklabels([SHORT.get(v, str(i + 1)) for i, v in enumerate(values)], fontsize=8)
        axis.set_xlim(-0.6, len(values) - 0.2)
        axis.set_title(catalog.label(norm), fontsize=10)
        axis.grid(True, axis="y", alpha=0.3)
    for axis in axes:
        if axis.get_subplotspec().is_first_col():
            axis.set_ylabel("validation error (%)" if metric == "val_error" else metric)
    handles = [
        Line2D(
            [],
            [],
            color=style[v][0],
            marker=style[v][1],
            linestyle="",
            markersize=7,
            markeredgecolor="k",
            label=f"{SHORT.get(v, i + 1)}: {v}" + (f" ({VALUE_LABELS[v]})" if v in VALUE_LABELS else ""),
        )
        for i, v in enumerate(values)
    ]
    columns = min(3, len(values)) if figure.get_figwidth() > 8 else 1  # a narrow grid: one entry a line
    figure.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    held = ", ".join(f"{k} = {v}" for k, v in (base or {}).items() if k != factor)
    title = f"Validation error by {TITLES.get(factor, factor)} and norm"
    subtitle = f"{study}: dots = seeds, marker = mean ± SD" + (f"; {held} where a norm has it" if held else "")
    figure.suptitle(f"{title}\n{subtitle}", fontsize=10)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return save(figure)
