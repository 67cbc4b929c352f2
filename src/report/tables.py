"""Aggregate runs and lay them out like the GN paper's Table 2 (rows norms, columns batch sizes)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from src.report.norms import NormCatalog
from src.report.stats import mean_ci

GROUP = ["dataset", "model", "norm", "batch"]
SUMMARY_METRICS = {"test_error": "test_error", "val_error": "val_error"}


def summary_metrics(runs: pd.DataFrame) -> list[str]:
    """Test and validation error, plus the median-of-last-k-epochs validation error where recorded."""
    extra = [c for c in runs.columns if c.startswith("val_error_median_last") and runs[c].notna().any()]
    return [*SUMMARY_METRICS, *sorted(extra)]


def summarize(runs: pd.DataFrame, catalog: NormCatalog | None = None) -> pd.DataFrame:
    """Per dataset × model × norm × batch: n; mean, std and 95 % t interval of test and validation
    error (final epoch) and of the median validation error of the last k epochs where the runs logged
    curves; mean best validation error; mean training steps/s."""
    columns = [*GROUP, "n"]
    metrics = summary_metrics(runs)
    for metric in metrics:
        columns += [f"{metric}_{s}" for s in ("mean", "std", "ci95_low", "ci95_high", "ci95_half")]
    columns += ["best_val_error_mean", "steps_per_second_mean"]
    rows = []
    for key, part in runs.groupby(GROUP, sort=True):
        row: dict[str, Any] = dict(zip(GROUP, key, strict=True))
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
    summary = pd.DataFrame(rows, columns=columns)
    catalog = catalog or NormCatalog.from_runs(runs)
    if not summary.empty:
        summary = summary.sort_values(
            ["dataset", "model", "norm", "batch"], key=lambda c: c.map(catalog.rank) if c.name == "norm" else c
        ).reset_index(drop=True)
    return summary


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
    """Per (dataset, model): a table of "mean ± std (n)" strings, rows norms, columns batch sizes.

    When both bn and gn are present a last row "gn − bn" gives the difference of the means, as the
    GN paper's Table 2 does.
    """
    catalog = catalog or NormCatalog()
    tables = {}
    for (dataset, model), part in summary.groupby(["dataset", "model"], sort=True):
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
