"""Figures as PNG bytes (matplotlib, Agg backend): error vs batch size, and error by norm at one batch."""

from __future__ import annotations

import io
import math
import re
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, NullLocator

from src.report.norms import NormCatalog

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _yerr(summary: pd.DataFrame, metric: str) -> np.ndarray:
    low = (summary[f"{metric}_mean"] - summary[f"{metric}_ci95_low"]).to_numpy(dtype=float)
    high = (summary[f"{metric}_ci95_high"] - summary[f"{metric}_mean"]).to_numpy(dtype=float)
    return np.nan_to_num(np.vstack([low, high]), nan=0.0)


def _batch_axis(axis: plt.Axes, batches: list[int]) -> None:
    """log2 batch size, decreasing from left to right as in the GN paper's Figure 1."""
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_locator(FixedLocator(batches))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([str(b) for b in batches])
    if len(batches) > 1:
        axis.set_xlim(max(batches) * 1.25, min(batches) / 1.25)
    axis.set_xlabel("batch size (images per worker)")


def natural_key(labels: tuple[Any, ...]) -> list[Any]:
    """Sort key for panel labels with numbers compared as numbers (``epochs=8`` before ``epochs=16``)."""
    return [int(part) if part.isdigit() else part for label in labels for part in re.split(r"(\d+)", str(label))]


def panel_title(dataset: str, slice_label: str, *extra: str, width: int = 44) -> str:
    """A panel's title: the dataset, then its slice (model and the design columns that vary), wrapped
    to the panel's width; the study's name is in the figure's title."""
    lines = textwrap.wrap(" · ".join([dataset, slice_label, *extra]), width=width)
    return "\n".join(lines)


def error_vs_batch(
    summary: pd.DataFrame,
    study: str,
    metric: str = "test_error",
    reference: dict[str, Any] | None = None,
    catalog: NormCatalog | None = None,
) -> bytes:
    """One panel per dataset × model: error (%) against log2 batch size, a line per norm with 95 % CI
    error bars; plus, when given, a panel with the published curve (``reference``)."""
    panels = sorted(summary.groupby(["dataset", "model"], sort=False), key=lambda item: natural_key(item[0]))
    has_reference = bool(reference and reference.get("batches") and reference.get("rows"))
    count = len(panels) + has_reference
    figure, axes = plt.subplots(1, count, figsize=(5.2 * count, 4.2), squeeze=False)
    catalog = catalog or NormCatalog()
    colors = catalog.colors(catalog.sorted(summary["norm"]) + catalog.sorted((reference or {}).get("rows") or {}))
    for axis, ((dataset, model), part) in zip(axes[0], panels, strict=False):
        for i, norm in enumerate(catalog.sorted(part["norm"])):
            line = part[part["norm"] == norm].sort_values("batch")
            n = ", ".join(sorted({str(int(v)) for v in line["n"]}))
            axis.errorbar(
                line["batch"],
                line[f"{metric}_mean"],
                yerr=_yerr(line, metric),
                label=f"{catalog.label(norm)} (n={n})",
                color=colors[norm],
                marker=MARKERS[i % len(MARKERS)],
                capsize=3,
                linewidth=1.6,
            )
        _batch_axis(axis, sorted({int(b) for b in part["batch"]}, reverse=True))
        axis.set_ylabel("error (%)" if "error" in metric else metric)
        axis.set_title(panel_title(dataset, model), fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    if has_reference:
        axis = axes[0][-1]
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
        _batch_axis(axis, sorted(batches, reverse=True))
        axis.set_ylabel("error (%)")
        title = reference.get("short") or reference.get("source") or "published"
        axis.set_title(f"published: {title}", fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"Study {study}: {metric.replace('_', ' ')}, mean with 95% CI over seeds", fontsize=11)
    figure.tight_layout()
    return _png(figure)


def error_by_norm(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    study: str,
    batch: int,
    metric: str = "test_error",
    catalog: NormCatalog | None = None,
) -> bytes:
    """Bars: each norm's mean error at one batch size with its 95 % CI; dots: the single runs."""
    at_batch = summary[summary["batch"] == batch]
    panels = sorted(at_batch.groupby(["dataset", "model"], sort=False), key=lambda item: natural_key(item[0]))
    figure, axes = plt.subplots(
        1,
        max(1, len(panels)),
        figsize=(1.2 + 1.0 * max(3, at_batch["norm"].nunique()) * max(1, len(panels)), 4.2),
        squeeze=False,
    )
    catalog = catalog or NormCatalog.from_runs(runs)
    colors = catalog.colors(catalog.sorted(summary["norm"]))
    for axis, ((dataset, model), part) in zip(axes[0], panels, strict=False):
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
        single = runs[(runs["dataset"] == dataset) & (runs["model"] == model) & (runs["batch"] == batch)]
        for i, norm in enumerate(norms):
            values = pd.to_numeric(single.loc[single["norm"] == norm, metric], errors="coerce").dropna()
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
            axis.scatter(i + jitter, values, color="k", s=10, zorder=3)
        for i, (mean, n) in enumerate(zip(part[f"{metric}_mean"], part["n"], strict=True)):
            if math.isfinite(mean):
                axis.annotate(f"{mean:.1f}", (i, mean), textcoords="offset points", xytext=(8, 2), fontsize=8)
            axis.annotate(f"n={int(n)}", (i, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        axis.set_xticks(x)
        axis.set_xticklabels([catalog.label(n) for n in norms], rotation=20, ha="right", fontsize=9)
        axis.set_ylabel("error (%)" if "error" in metric else metric)
        axis.set_title(panel_title(dataset, model, f"batch {batch}"), fontsize=9)
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(
        f"Study {study}: {metric.replace('_', ' ')} by norm at batch {batch} (95% CI, dots: runs)", fontsize=11
    )
    figure.tight_layout()
    return _png(figure)


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
