"""``learning_curves.png``/``.svg``: each cell's mean validation error per epoch, from the runs' curves.

Faceted as :func:`src.report.plots.error_vs_batch` is (a panel per dataset × model × design column other
than weight standardization and the schedule), and by batch size, since the x axis is the epoch: at most
three panels a row, a shared y axis. In a panel a line per norm and setting, styled as in error_vs_batch:
the colour is the norm's, WS solid and no WS dashed, a marker per schedule. Each line is the per-epoch
mean over the cell's seeds of the epochs every one of them logged (:func:`src.report.curves.mean_curve`).
"""

from __future__ import annotations

import pandas as pd

from src.report.curves import mean_curve
from src.report.figure import LEGEND_COLUMNS, finish, panel_grid, panel_title, panels, save, varying
from src.report.norm_info import NormCatalog
from src.report.plots import figure_title, label_rows, legend_label, line_style, lines_of, schedules

NOTE = "Each line: a cell's mean over its seeds. Line style: WS solid, no WS dashed; marker: the schedule."


def learning_curves(
    runs: pd.DataFrame,
    curves: dict[str, pd.DataFrame],
    study: str,
    catalog: NormCatalog | None = None,
    design: list[str] | tuple[str, ...] = (),
) -> tuple[bytes, bytes] | None:
    """PNG and SVG of the cells' mean validation error per epoch; None when no run has a curve."""
    if runs.empty or "run_dir" not in runs:
        return None
    with_curve = runs[runs["run_dir"].astype(str).isin(set(curves))]
    if with_curve.empty:
        return None
    catalog = catalog or NormCatalog.from_runs(runs)
    facets = ["dataset", "model", *[c for c in design if c in runs and c not in LEGEND_COLUMNS], "batch"]
    shown = varying(with_curve, [c for c in LEGEND_COLUMNS if c in with_curve])
    lengths = schedules(with_curve)
    groups = panels(with_curve, facets)
    titled = varying(with_curve, facets)
    figure, axes = panel_grid(len(groups))
    colors = catalog.colors(catalog.sorted(runs["norm"]))
    for axis, (values, part) in zip(axes, groups, strict=True):
        norms = catalog.sorted(part["norm"])
        for line_values, line in lines_of(part, shown, catalog):
            mean = mean_curve([curves[str(d)] for d in line["run_dir"]])
            if mean is None or "val_error" not in mean:
                continue
            norm = str(line_values["norm"])
            style, marker = line_style(line_values, shown, lengths, norms.index(norm))
            axis.plot(
                mean["epoch"] + 1,
                mean["val_error"],
                color=colors[norm],
                linestyle=style,
                marker=marker,
                markevery=max(1, len(mean) // 6),
                markersize=4,
                linewidth=1.3,
                label=legend_label(catalog.label(norm), line_values, shown),
            )
        axis.set_xlabel("epoch")
        axis.set_title(panel_title(values, titled), fontsize=10)
        axis.grid(True, alpha=0.3)
    label_rows(axes, "validation error (%)")
    what = "validation error per epoch, mean over seeds"
    if "batch" not in titled:
        what += f" at batch {int(with_curve['batch'].iloc[0])}"
    title = figure_title(with_curve, study, what, titled)
    finish(figure, title, axes, NOTE)
    return save(figure)
