"""What every figure of a report shares: a wrapped grid of panels, short labels, and PNG + SVG bytes.

- :func:`panel_grid`: ``count`` panels on a shared y axis, at most :data:`MAX_COLUMNS` a row (rows as even
  as they go: 4 panels are 2 × 2, 10 are 4 rows of 3), unused axes hidden;
- :func:`short_setting`: a design column's value as a paper would write it (``16 epochs``, ``WS``,
  ``crop padding: reflect``, ``min group size 2``), never a config string;
- :func:`save`: the figure as PNG and SVG bytes; the SVG is deterministic (``svg.hashsalt`` fixed, no
  date), so the same runs give the same file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from src.report.cells import as_text
from src.report.slices import missing, natural_key

MAX_COLUMNS = 3
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LEGEND_COLUMNS = ("standardize_weights", "epochs")  # shown by line style and marker, not by panel
SHORT_VALUES = {"crop_flip": "zeros", "crop_flip_mean": "mean", "crop_flip_reflect": "reflect"}
SHORT_NAMES = {"dataset.augment": "crop padding", "standardize_weights": "WS", "norm_groups": "groups"}
SVG_SALT = "normlab"


def panel_grid(
    count: int, width: float = 4.2, height: float = 3.4, sharey: bool = True
) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``count`` panels, at most :data:`MAX_COLUMNS` a row, sharing the y axis; the axes in
    reading order (the grid's spare cells are hidden)."""
    count = max(1, count)
    rows = math.ceil(count / MAX_COLUMNS)
    columns = math.ceil(count / rows)
    figure, axes = plt.subplots(
        rows, columns, figsize=(0.6 + width * columns, 0.9 + height * rows), sharey=sharey, squeeze=False
    )
    flat = [axis for row in axes for axis in row]
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def finish(figure: plt.Figure, title: str, legend_from: Iterable[plt.Axes] = (), note: str = "") -> None:
    """Title, one legend for the lines of ``legend_from`` (each label once) under the panels (or right of
    them when it would be taller than half the figure), ``note`` (what the marks mean) at the bottom, and a
    tight layout of the panels in the space left."""
    entries: dict[str, Any] = {}
    for axis in legend_from:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    height, width = figure.get_figheight(), figure.get_figwidth()
    below = 0.3 if note else 0.0
    columns = max(1, min(len(entries), int(width // 2.7))) if entries else 1
    legend = (math.ceil(len(entries) / columns) * 0.19 + 0.1) if entries else 0.0
    side = legend > height / 2
    right = 1.0
    if side:  # a tall legend: to the right of the panels, the figure widened for it
        extra = 0.4 + 0.065 * max(len(label) for label in entries)
        figure.set_figwidth(width + extra)
        right, legend = width / (width + extra), 0.0
    bottom = (legend + below) / height
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, bottom, right, 1 - 0.1 / height))
    if entries:
        anchor = (
            {"loc": "center left", "bbox_to_anchor": (right, 0.5 + bottom / 2)}
            if side
            else {
                "loc": "upper center",
                "bbox_to_anchor": (0.5, bottom),
            }
        )
        figure.legend(
            list(entries.values()),
            list(entries),
            ncol=1 if side else columns,
            fontsize=8,
            frameon=False,
            **anchor,
        )
    if note:
        figure.text(0.5, below / 2 / height, note, ha="center", va="center", fontsize=7)


def save(figure: plt.Figure, dpi: int = 120) -> tuple[bytes, bytes]:
    """``figure`` as (PNG, SVG) bytes, then closed; the SVG without a date and with fixed element ids."""
    outputs = []
    try:
        for kind, extra in (("png", {"dpi": dpi}), ("svg", {"metadata": {"Date": None}})):
            buffer = io.BytesIO()
            with plt.rc_context({"svg.hashsalt": SVG_SALT}):
                figure.savefig(buffer, format=kind, bbox_inches="tight", **extra)
            outputs.append(buffer.getvalue())
    finally:
        plt.close(figure)
    return outputs[0], outputs[1]


def short_setting(column: str, value: Any) -> str:
    """``epochs=16`` → ``16 epochs``; ``standardize_weights`` → ``WS`` / ``no WS``; ``dataset.augment`` →
    ``crop padding: reflect``; any other key by its last part, ``norm.layer.min_group_size=2`` →
    ``min group size 2``. Empty for a missing value."""
    if missing(value):
        return ""
    text = as_text(value)
    if column == "epochs":
        return f"{text} epochs"
    if column == "standardize_weights":
        return "WS" if text.lower() in ("true", "1") else "no WS"
    if column == "batch":
        return f"batch {text}"
    name = SHORT_NAMES.get(column, column.rsplit(".", 1)[-1].replace("_", " "))
    return f"{name}: {SHORT_VALUES.get(text, text)}" if column in SHORT_NAMES else f"{name} {text}"


def panel_title(values: dict[str, Any], varying: Iterable[str], width: int = 48) -> str:
    """A panel's title: the values of the ``varying`` panel columns (dataset and model included only when
    they differ between panels), e.g. ``crop padding: reflect · min group size 4``; the dataset and model
    when no panel column varies. Wrapped between values to ``width`` characters a line."""
    parts = []
    for column in varying:
        value = values.get(column)
        parts.append(str(value) if column in ("dataset", "model") else short_setting(column, value))
    parts = [part for part in parts if part] or [str(values[c]) for c in ("dataset", "model") if c in values]
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" · {part}"
        else:
            lines.append(part)
    return "\n".join(lines)


def panels(frame: pd.DataFrame, columns: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``frame`` split by ``columns`` (missing values a group of their own), in numeric order."""

    if not columns:
        return [({}, frame)]
    groups = frame.groupby(columns, sort=False, dropna=False)
    items = [(dict(zip(columns, key if isinstance(key, tuple) else (key,), strict=True)), part) for key, part in groups]
    return sorted(items, key=lambda item: panel_key(item[0]))


def panel_key(values: dict[str, Any]) -> list[Any]:
    """Sort key of a panel's values: numbers as numbers, a missing value first, batch sizes decreasing (as
    the GN paper's axis runs)."""
    key: list[Any] = []
    for column, value in values.items():
        if column == "batch" and not missing(value):
            key.append([(0, -float(value), "")])
        else:
            key.append(natural_key("" if missing(value) else value))
    return key


def varying(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` of ``frame`` with more than one value (missing counts as one)."""
    return [c for c in columns if c in frame and frame[c].map(lambda v: "" if missing(v) else as_text(v)).nunique() > 1]
