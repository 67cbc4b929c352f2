"""Aggregate runs and lay them out like the GN paper's tables (rows norms, columns batch sizes)."""

from __future__ import annotations

import math

import pandas as pd

GROUP = ["dataset", "model", "norm", "batch"]
NORM_ORDER = ["bn", "gn", "ln", "in", "none"]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × model × norm × batch: n and mean/std of test and validation error, steps/s."""
    grouped = runs.groupby(GROUP, sort=True)
    summary = grouped.agg(
        n=("test_error", "size"),
        test_error_mean=("test_error", "mean"),
        test_error_std=("test_error", "std"),
        val_error_mean=("best_val_error", "mean"),
        val_error_std=("best_val_error", "std"),
        steps_per_second=("steps_per_second", "mean"),
    )
    return summary.reset_index()


def norm_sort_key(norms: pd.Index) -> pd.Index:
    """Known norms in the paper's order first, others alphabetically after them."""
    return pd.Index([(NORM_ORDER.index(n), n) if n in NORM_ORDER else (len(NORM_ORDER), n) for n in norms])


def format_cell(mean: float, std: float, n: int) -> str:
    """ "mean ± std (n)"; the std is omitted for a single run."""
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f} (1)" if n == 1 else f"{mean:.2f} ({n})"
    return f"{mean:.2f} ± {std:.2f} ({n})"


def pivot_table(summary: pd.DataFrame, metric: str = "test_error") -> dict[tuple[str, str], pd.DataFrame]:
    """Per (dataset, model): a table of "mean ± std (n)" strings, rows norms, columns batch sizes."""
    tables = {}
    for (dataset, model), part in summary.groupby(["dataset", "model"], sort=True):
        cells = part.assign(
            cell=[
                format_cell(m, s, int(n))
                for m, s, n in zip(part[f"{metric}_mean"], part[f"{metric}_std"], part["n"], strict=True)
            ]
        )
        table = cells.pivot(index="norm", columns="batch", values="cell").fillna("–")
        table = table.sort_index(key=norm_sort_key)
        table.columns = [f"batch {b}" for b in table.columns]
        table.index.name = "norm"
        tables[(str(dataset), str(model))] = table
    return tables
