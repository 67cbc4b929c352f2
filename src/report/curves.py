"""Per-epoch curves of a run, and what they say.

A run record's ``curve`` (schema 1) lists, per epoch, ``train_loss`` (the epoch's mean training loss),
``val_error`` (validation error, %) and ``lr``. Records of schema 0 have none; their run directory's
``metrics.csv`` (Lightning's CSVLogger: ``train/loss`` and ``val/error``, one row per logging call) is
read instead (:func:`read_curve`). A curve here is a DataFrame with one row per epoch: ``epoch``,
``val_error``, ``train_loss`` and ``lr`` (NaN where not recorded).

Two summaries feed the report:

- ``val_error_drop``: how much the validation error still fell over the last ``k`` epochs,
  ``v[E − k] − v[E]`` (positive: still improving), the convergence gate's measure;
- ``val_error_median_last<k>``: the median validation error of the last ``k`` epochs, the GN
  paper's measurement (it reports the median of the final 5 epochs).

:func:`epochs_to_plateau` sizes a longer schedule from a curve's tail by fitting ``v(e) = a + b/e``
(least squares over the second half of the epochs) and solving ``b·k/(E(E − k)) ≤ drop`` — the epoch
at which that fitted curve falls by less than ``drop`` over ``k`` epochs. It is a rough guide: a longer
schedule (e.g. a cosine learning rate stretched over more epochs) changes the whole curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.run.records import CURVE_FIELDS

CURVE_FILE = "metrics.csv"
COLUMNS = {"val/error": "val_error", "train/loss": "train_loss"}


def curve_frame(points: Sequence[Mapping[str, Any]] | None) -> pd.DataFrame | None:
    """A record's ``curve`` (a list of per-epoch dicts) as a curve DataFrame; None when empty."""
    if not points:
        return None
    frame = pd.DataFrame([{key: point.get(key) for key in CURVE_FIELDS} for point in points])
    frame = frame.dropna(subset=["epoch"])
    frame["epoch"] = frame["epoch"].astype(int)
    for column in CURVE_FIELDS[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.reset_index(drop=True) if len(frame) else None


def curve_points(curve: pd.DataFrame | None) -> list[dict[str, float]]:
    """A curve DataFrame as a record's ``curve``: one dict per epoch, NaN kept as JSON ``NaN``."""
    if curve is None:
        return []
    columns = [c for c in CURVE_FIELDS if c in curve]
    return [
        {key: int(row[key]) if key == "epoch" else float(row[key]) for key in columns}
        for row in curve[columns].to_dict("records")
    ]


def read_curve(run_dir: str | Path) -> pd.DataFrame | None:
    """``epoch``, ``val_error``, ``train_loss`` per epoch from ``run_dir/metrics.csv``; None without one."""
    path = Path(run_dir) / CURVE_FILE
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if "epoch" not in raw or not set(COLUMNS) & set(raw.columns):
        return None
    raw = raw.rename(columns=COLUMNS)
    columns = [c for c in COLUMNS.values() if c in raw]
    raw = raw.dropna(subset=["epoch"])
    curve = raw.groupby(raw["epoch"].astype(int))[columns].last().reset_index()  # last non-null per epoch
    for column in COLUMNS.values():
        if column not in curve:
            curve[column] = math.nan
    curve = curve.dropna(subset=["val_error", "train_loss"], how="all")
    return curve[["epoch", "val_error", "train_loss"]] if len(curve) else None  # no lr in metrics.csv


def val_drop(curve: pd.DataFrame, k: int) -> float:
    """``v[E − k] − v[E]``: the fall of validation error over the last ``k`` epochs (NaN if too short)."""
    values = curve["val_error"].dropna().to_numpy(dtype=float)
    return float(values[-1 - k] - values[-1]) if len(values) > k else math.nan


def median_last(curve: pd.DataFrame, k: int) -> float:
    """The median validation error of the last ``k`` epochs (NaN when fewer were logged)."""
    values = curve["val_error"].dropna().to_numpy(dtype=float)
    return float(np.median(values[-k:])) if len(values) >= k else math.nan


def summarize_curve(curve: pd.DataFrame | None, k: int, median_k: int) -> dict[str, float]:
    """The runs.csv columns a curve adds: epochs logged, the last-k drop and the median of the last k."""
    if curve is None:
        return {}
    return {
        "curve_epochs": float(len(curve)),
        f"val_error_drop_last{k}": val_drop(curve, k),
        f"val_error_median_last{median_k}": median_last(curve, median_k),
    }


def mean_curve(curves: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The per-epoch mean of several runs' curves (epochs all of them logged)."""
    curves = [c for c in curves if c is not None and len(c)]
    if not curves:
        return None
    stacked = pd.concat(curves)
    counts = stacked.groupby("epoch").size()
    columns = [c for c in ("val_error", "train_loss", "lr") if c in stacked]
    mean = stacked.groupby("epoch")[columns].mean()
    return mean[counts == len(curves)].reset_index()


def _fit_inverse(epochs: np.ndarray, values: np.ndarray) -> tuple[float, float] | None:
    """Least-squares ``a + b/e`` through the second half of (epoch, value) (epochs counted from 1)."""
    keep = np.isfinite(values)
    epochs, values = epochs[keep], values[keep]
    half = epochs >= max(1, len(epochs) // 2)
    if half.sum() < 3:
        return None
    b, a = np.polyfit(1.0 / epochs[half], values[half], 1)
    return float(a), float(b)


def epochs_to_plateau(curve: pd.DataFrame, k: int, drop: float) -> int | None:
    """Epochs after which ``a + b/e`` fitted to the curve's tail falls by ≤ ``drop`` over ``k`` epochs."""
    epochs = curve["epoch"].to_numpy(dtype=float) + 1
    fit = _fit_inverse(epochs, curve["val_error"].to_numpy(dtype=float))
    if fit is None:
        return None
    _, b = fit
    if b <= 0:
        return int(epochs[-1])
    return math.ceil((k + math.sqrt(k * k + 4 * b * k / drop)) / 2)


def epochs_to_loss(curve: pd.DataFrame, target: float) -> int | None:
    """Epochs at which ``a + b/e`` fitted to the training loss's tail reaches ``target``; None if never."""
    epochs = curve["epoch"].to_numpy(dtype=float) + 1
    fit = _fit_inverse(epochs, curve["train_loss"].to_numpy(dtype=float))
    if fit is None:
        return None
    a, b = fit
    if b <= 0 or a >= target:
        return None
    return math.ceil(b / (target - a))
