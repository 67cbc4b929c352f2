"""Aggregate runs and lay them out like the GN paper's Table 2 (rows norms, columns batch sizes)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from src.report.cells import as_text
from src.report.load import setting_columns
from src.report.norm_info import NormCatalog
from src.report.slices import SLICE, missing, natural_key
from src.report.stats import mean_ci

GROUP = ["dataset", "model", "norm", "batch"]
SUMMARY_METRICS = {"test_error": "test_error", "val_error": "val_error"}
NOT_SETTINGS = {"study", "seed", *GROUP}


def summary_metrics(runs: pd.DataFrame) -> list[str]:
    """Test and validation error, plus the median-of-last-k-epochs validation error where recorded."""
    extra = [c for c in runs.columns if c.startswith("val_error_median_last") and runs[c].notna().any()]
    return [*SUMMARY_METRICS, *sorted(extra)]


def cell_settings(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """The setting columns (``epochs`` and the config keys the runs differ in) that take one value in every
    cell of ``runs`` grouped by ``keys``: they describe a cell without splitting it."""
    columns = [c for c in setting_columns(runs) if c not in NOT_SETTINGS and c not in keys]
    constant = []
    for column in columns:
        values = runs[column].map(lambda v: None if missing(v) else as_text(v))
        if (values.groupby([runs[k] for k in keys]).nunique(dropna=True) <= 1).all():
            constant.append(column)
    return constant


def summarize(runs: pd.DataFrame, catalog: NormCatalog | None = None) -> pd.DataFrame:
    """Per dataset × model × setting (the ``slice`` of :func:`src.report.slices.by_setting`, the model when
    absent) × norm × batch: n; mean, std and 95 % t interval of test and validation error (final epoch)
    and of the median validation error of the last k epochs where the runs logged curves; mean best
    validation error; mean training steps/s.

    Tidy like the runs: ``model`` is the plain model name, and ``epochs`` and every config key the runs
    differ in that takes one value in each cell (``standardize_weights``, ``dataset.augment``, …) has its
    own column; ``slice`` (last) is the setting's label the markdown tables are headed by."""
    runs = runs if SLICE in runs else runs.assign(**{SLICE: runs["model"].astype(str) if len(runs) else []})
    keys = [*GROUP[:2], SLICE, *GROUP[2:]]
    settings = cell_settings(runs, keys) if len(runs) else []
    columns = [*GROUP[:2], *settings, *GROUP[2:], "n"]
    metrics = summary_metrics(runs)
    for metric in metrics:
        columns += [f"{metric}_{s}" for s in ("mean", "std", "ci95_low", "ci95_high", "ci95_half")]
    columns += ["best_val_error_mean", "steps_per_second_mean", SLICE]
    rows = []
    for key, part in runs.groupby(keys, sort=False):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for column in settings:
            present = part[column].dropna()
            row[column] = present.iloc[0] if len(present) else None
        row["n"] = len(part)
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce")
            estimate = mean_ci(values)
            row[f"{metric}_mean"] = estimate.value
            row[f"{metric}_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan
            row[f"{metric}_ci95_low"] = estimate.low
            row[f"{metric}_ci95_high"] = estimate.high
            row[f"{metric}_ci95_half"] = estimate.half_width
        row["best_val_error_mean"] = pd.to_numeric(part["best_val_error"], errors="coerce").mean()
        row["steps_per_second_mean"] = pd.to_numeric(part["steps_per_second"], errors="coerce").mean()
        rows.append(row)
    catalog = catalog or NormCatalog.from_runs(runs)
    rows.sort(key=lambda r: (str(r["dataset"]), natural_key(r[SLICE]), catalog.rank(str(r["norm"])), int(r["batch"])))
    return pd.DataFrame(rows, columns=columns)


def format_cell(mean: float, std: float, n: int) -> str:
    """ "mean ± std (n)"; the std is omitted for a single run."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f} ({n})"
    return f"{mean:.2f} ± {std:.2f} ({n})"


def pivot_table(
    summary: pd.DataFrame, metric: str = "test_error", catalog: NormCatalog | None = None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (dataset, slice), in numeric order (``epochs=8`` before ``epochs=16``): a table of
    "mean ± std (n)" strings, rows norms, columns batch sizes; ``slice`` is the model when absent.

    When both bn and gn are present a last row "gn − bn" gives the difference of the means, as the
    GN paper's Table 2 does.
    """
    catalog = catalog or NormCatalog()
    tables = {}
    label = SLICE if SLICE in summary else "model"
    slices = sorted(summary.groupby(["dataset", label], sort=False), key=lambda item: natural_key(item[0]))
    for (dataset, model), part in slices:
        cells = part.assign(
            cell=[
                format_cell(m, s, int(n))
                for m, s, n in zip(part[f"{metric}_mean"], part[f"{metric}_std"], part["n"], strict=True)
            ]
        )
        table = cells.pivot(index="norm", columns="batch", values="cell").fillna("–")
        table = table.sort_index(key=catalog.sort_key)
        means = part.pivot(index="norm", columns="batch", values=f"{metric}_mean")
        if {"bn", "gn"} <= set(means.index):
            delta = means.loc["gn"] - means.loc["bn"]
            table.loc["gn − bn"] = [f"{d:+.2f}" if pd.notna(d) else "–" for d in delta.reindex(table.columns)]
        table.columns = [f"batch {b}" for b in table.columns]
        table.index.name = "norm"
        tables[(str(dataset), str(model))] = table
    return tables


def reference_table(reference: dict[str, Any], catalog: NormCatalog | None = None) -> pd.DataFrame | None:
    """A published table from a study's ``report.references`` entry, in the same layout as ours.

    The entry has ``batches: [32, 16, …]``, ``rows: {norm: [values…]}`` and optionally
    ``sd: {norm: [sd…]}`` (rendered "value ± sd"); values may be null for cells not published.
    """
    batches = reference.get("batches") or []
    rows = reference.get("rows") or {}
    if not batches or not isinstance(rows, dict) or not rows:
        return None
    sds = reference.get("sd") or {}
    data = {}
    for norm, values in rows.items():
        values = list(values or [])
        spread = list(sds.get(norm) or [])
        cells = []
        for i in range(len(batches)):
            value = values[i] if i < len(values) else None
            sd = spread[i] if i < len(spread) else None
            if value is None:
                cells.append("–")
            elif sd is None:
                cells.append(f"{float(value):.1f}")
            else:
                cells.append(f"{float(value):.1f} ± {float(sd):.1f}")
        data[str(norm)] = cells
    table = pd.DataFrame.from_dict(data, orient="index", columns=[int(b) for b in batches])
    table = table[sorted(table.columns)].sort_index(key=(catalog or NormCatalog()).sort_key)
    if {"bn", "gn"} <= set(rows) and reference.get("delta_row", True):
        delta = []
        for batch in table.columns:
            i = [int(b) for b in batches].index(batch)
            bn, gn = (rows["bn"][i] if i < len(rows["bn"]) else None), (rows["gn"][i] if i < len(rows["gn"]) else None)
            delta.append(f"{float(gn) - float(bn):+.1f}" if bn is not None and gn is not None else "–")
        table.loc["gn − bn"] = delta
    table.columns = [f"batch {b}" for b in table.columns]
    table.index.name = "norm"
    return table
