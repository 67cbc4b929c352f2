"""A study's figures of error: against batch size (the GN paper's Figure 1) and by norm at one batch.

Both are faceted grids on a shared y axis, at most three panels a row (:mod:`src.report.figure`), each
panel under a short title (``crop padding: reflect · min group size 4``, never a config string), and both
come as PNG and SVG bytes.

- :func:`error_vs_batch`: a panel per dataset × model × design column other than weight standardization
  and the schedule, which are in the legend (line style: WS solid, no WS dashed; marker: the schedule);
  a line per norm and setting, with each cell mean's 95 % t interval from its own seeds' variance
  (:func:`src.report.stats.mean_ci`, the one-sample interval: for a single cell, the per-cell-variance
  model the verdicts use), plus a panel with the published curve when the study gives one;
- :func:`error_by_norm`: a panel per setting (slice), a bar per norm with the same interval, the single
  runs as dots, and each mean written above its highest mark (the bar's interval or a dot), never on a dot.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, NullLocator

from src.report.cells import as_text
from src.report.figure import (
    LEGEND_COLUMNS,
    MARKERS,
    finish,
    missing,
    panel_grid,
    panel_title,
    panels,
    save,
    short_setting,
    varying,
)
from src.report.norm_info import NormCatalog
from src.report.slices import SLICE, natural_key

__all__ = ["choose_bar_batch", "error_by_norm", "error_vs_batch", "natural_key", "panel_title"]

BAR_NOTE = "Bars: cell means with the 95 % t interval of each (its own seeds' variance); dots: single runs."
INTERVAL_NOTE = (
    "Error bars: 95 % t interval of each cell mean from its own seeds' variance (mean_ci; for one cell the"
    " per-cell-variance model of the verdicts). n = seeds per cell."
)


def _yerr(summary: pd.DataFrame, metric: str) -> np.ndarray:
    low = (summary[f"{metric}_mean"] - summary[f"{metric}_ci95_low"]).to_numpy(dtype=float)
    high = (summary[f"{metric}_ci95_high"] - summary[f"{metric}_mean"]).to_numpy(dtype=float)
    return np.nan_to_num(np.vstack([low, high]), nan=0.0)


def batch_axis(axis: Any, batches: list[int]) -> None:
    """log2 batch size, decreasing from left to right as in the GN paper's Figure 1."""
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_locator(FixedLocator(batches))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([str(b) for b in batches])
    if len(batches) > 1:
        axis.set_xlim(max(batches) * 1.25, min(batches) / 1.25)
    axis.set_xlabel("batch size (images per worker)")


def y_label(metric: str) -> str:
    return "error (%)" if "error" in metric else metric


def label_rows(axes: list[Any], text: str) -> None:
    """The y label on the first panel of each row (the axis is shared)."""
    for axis in axes:
        if axis.get_subplotspec().is_first_col():
            axis.set_ylabel(text)


def figure_title(frame: pd.DataFrame, study: str, what: str, titled: list[str]) -> str:
    """``study: what``, with the dataset and model every panel shares when the panels are titled by other
    columns (``titled``; else their titles name them)."""
    common = [str(frame[c].iloc[0]) for c in ("dataset", "model") if c in frame and frame[c].nunique() == 1]
    return f"{study}: {what}" + (f" ({' · '.join(common)})" if common and titled else "")


def dodge(count: int, index: int, step: float = 0.035) -> float:
    """A factor that moves line ``index`` of ``count`` sideways on a log2 axis, so error bars at one
    batch do not hide each other."""
    return float(2 ** ((index - (count - 1) / 2) * step))


def line_style(values: dict[str, Any], shown: list[str], epochs: list[str], index: int) -> tuple[str, str]:
    """(line style, marker) of a line: WS solid, no WS dashed; a marker per schedule when the schedule
    varies, else per norm (``index``)."""
    style = "-"
    if "standardize_weights" in shown and short_setting("standardize_weights", values["standardize_weights"]) != "WS":
        style = "--"
    if "epochs" in shown and not missing(values.get("epochs")):
        return style, MARKERS[epochs.index(as_text(values["epochs"])) % len(MARKERS)]
    return style, MARKERS[index % len(MARKERS)]


def legend_label(name: str, values: dict[str, Any], shown: list[str], n: str = "") -> str:
    """``Batch Norm, WS, 16 epochs (n=3)``."""
    extra = "".join(f", {short_setting(c, values[c])}" for c in shown if short_setting(c, values[c]))
    return f"{name}{extra}" + (f" (n={n})" if n else "")


def lines_of(part: pd.DataFrame, shown: list[str], catalog: NormCatalog) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``part`` split into lines: one per norm and value of the ``shown`` legend columns, norms in their
    declared order, settings in numeric order."""
    lines = panels(part, ["norm", *shown])
    return sorted(lines, key=lambda item: catalog.rank(str(item[0]["norm"])))


def schedules(frame: pd.DataFrame) -> list[str]:
    """The schedule lengths (epochs) in ``frame``, as text, in numeric order."""
    if "epochs" not in frame:
        return []
    return sorted({as_text(v) for v in frame["epochs"].dropna()}, key=float)


def error_vs_batch(
    summary: pd.DataFrame,
    study: str,
    metric: str = "test_error",
    reference: dict[str, Any] | None = None,
    catalog: NormCatalog | None = None,
    design: list[str] | tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """PNG and SVG: ``metric`` against log2 batch size, a panel per dataset × model × design column (WS
    and the schedule in the legend), a line per norm and setting with 95 % CI error bars; plus, when
    given, a panel with the published curve (``reference``)."""
    catalog = catalog or NormCatalog()
    facets = ["dataset", "model", *[c for c in design if c in summary and c not in LEGEND_COLUMNS]]
    groups = panels(summary, facets)
    shown = varying(summary, [c for c in LEGEND_COLUMNS if c in summary])
    lengths = schedules(summary)
    has_reference = bool(reference and reference.get("batches") and reference.get("rows"))
    figure, axes = panel_grid(len(groups) + has_reference)
    colors = catalog.colors(catalog.sorted(summary["norm"]) + catalog.sorted((reference or {}).get("rows") or {}))
    titled = varying(summary, facets)
    for axis, (values, part) in zip(axes, groups, strict=False):
        norms = catalog.sorted(part["norm"])
        lines = lines_of(part, shown, catalog)
        for index, (line_values, line) in enumerate(lines):
            norm = str(line_values["norm"])
            line = line.sort_values("batch")
            style, marker = line_style(line_values, shown, lengths, norms.index(norm))
            n = ", ".join(sorted({str(int(v)) for v in line["n"]}, key=int))
            axis.errorbar(
                line["batch"] * dodge(len(lines), index),
                line[f"{metric}_mean"],
                yerr=_yerr(line, metric),
                label=legend_label(catalog.label(norm), line_values, shown, n),
                color=colors[norm],
                marker=marker,
                linestyle=style,
                capsize=3,
                linewidth=1.5,
            )
        batch_axis(axis, sorted({int(b) for b in part["batch"]}, reverse=True))
        axis.set_title(panel_title(values, titled), fontsize=10)
        axis.grid(True, alpha=0.3)
    if has_reference:
        _published(axes[-1], reference or {}, catalog, colors)
    label_rows(axes, y_label(metric))
    title = figure_title(summary, study, f"{metric.replace('_', ' ')} vs batch size", titled)
    finish(figure, title, axes[: len(groups)], INTERVAL_NOTE)
    return save(figure)


def _published(axis: Any, reference: dict[str, Any], catalog: NormCatalog, colors: dict[str, str]) -> None:
    """The published curve of ``reference`` (dashed), with its SDs where given."""
    batches = [int(b) for b in reference["batches"]]
    for i, (norm, values) in enumerate(sorted(reference["rows"].items(), key=lambda kv: catalog.rank(kv[0]))):
        points = [(b, v) for b, v in zip(batches, values or [], strict=False) if v is not None]
        if not points:
            continue
        sds = (reference.get("sd") or {}).get(norm) or []
        xs, ys = zip(*points, strict=True)
        err = [sds[batches.index(b)] if batches.index(b) < len(sds) and sds[batches.index(b)] else 0 for b in xs]
        axis.errorbar(
            xs,
            ys,
            yerr=err if any(err) else None,
            label=catalog.label(norm),
            color=colors.get(str(norm), "k"),
            marker=MARKERS[i % len(MARKERS)],
            linestyle="--",
            capsize=3,
        )
    batch_axis(axis, sorted(batches, reverse=True))
    title = reference.get("short") or reference.get("source") or "published"
    axis.set_title(f"published: {title}", fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)


def error_by_norm(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    study: str,
    batch: int,
    metric: str = "test_error",
    catalog: NormCatalog | None = None,
    design: list[str] | tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """PNG and SVG: a panel per setting, a bar per norm (its mean at ``batch`` with the 95 % CI), the
    single runs as dots, the mean written above the bar's highest mark."""
    catalog = catalog or NormCatalog.from_runs(runs)
    at_batch = summary[summary["batch"] == batch]
    key = SLICE if SLICE in at_batch and SLICE in runs else "model"
    facets = ["dataset", "model", *[c for c in design if c in at_batch]]
    groups = panels(at_batch, facets)
    titled = varying(at_batch, facets)
    width = max(2.6, 0.85 * max(3, at_batch["norm"].nunique()))
    figure, axes = panel_grid(len(groups), width=width, height=3.4)
    colors = catalog.colors(catalog.sorted(summary["norm"]))
    for axis, (values, part) in zip(axes, groups, strict=False):
        norms = catalog.sorted(part["norm"])
        part = part.set_index("norm").loc[norms].reset_index()
        x = np.arange(len(norms))
        axis.bar(
            x,
            part[f"{metric}_mean"],
            yerr=_yerr(part, metric),
            color=[colors[n] for n in norms],
            alpha=0.75,
            capsize=4,
            edgecolor="k",
            linewidth=0.6,
        )
        labels = set(part[key].astype(str))
        single = runs[(runs["dataset"] == values["dataset"]) & runs[key].astype(str).isin(labels)]
        single = single[single["batch"] == batch]
        for i, (norm, mean, high, n) in enumerate(
            zip(norms, part[f"{metric}_mean"], part[f"{metric}_ci95_high"], part["n"], strict=True)
        ):
            dots = pd.to_numeric(single.loc[single["norm"] == norm, metric], errors="coerce").dropna()
            jitter = np.linspace(-0.12, 0.12, len(dots)) if len(dots) > 1 else np.zeros(len(dots))
            axis.scatter(i + jitter, dots, color="k", s=10, zorder=3)
            if math.isfinite(mean):
                top = max([mean, *([high] if math.isfinite(high) else []), *dots])
                axis.annotate(
                    f"{mean:.1f}", (i, top), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8
                )
            axis.annotate(f"n={int(n)}", (i, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        axis.set_xticks(x)
        axis.set_xticklabels([catalog.label(n) for n in norms], rotation=20, ha="right", fontsize=9)
        axis.set_title(panel_title(values, titled, width=int(11 * width)), fontsize=10)
        axis.grid(True, axis="y", alpha=0.3)
        axis.margins(y=0.12)
    label_rows(axes, y_label(metric))
    title = figure_title(at_batch, study, f"{metric.replace('_', ' ')} by norm at batch {batch}", titled)
    finish(figure, title, note=BAR_NOTE)
    return save(figure)


def choose_bar_batch(summary: pd.DataFrame, preferred: Any = None) -> int | None:
    """The batch for the bar chart: the study's ``report.bar_batch`` if it was run, else the batch with
    the most norms (the largest one on ties)."""
    if summary.empty:
        return None
    batches = {int(b) for b in summary["batch"]}
    if preferred is not None and int(preferred) in batches:
        return int(preferred)
    counts = summary.groupby("batch")["norm"].nunique()
    return int(max(counts.index, key=lambda b: (counts[b], b)))
