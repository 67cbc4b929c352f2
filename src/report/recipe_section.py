"""The recipes section of a recipe pilot's ``summary.md`` and its files, assembled from the tables of
:mod:`src.report.recipes` (what each table holds and the choice rule are described there) and the padding
figure of :mod:`src.report.recipe_plots`."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pandas as pd

from src.report.load import Skipped
from src.report.norm_info import NormCatalog
from src.report.recipes import (
    ABSENT,
    PADDING,
    SELECTION_METRIC,
    base_values,
    factor_grid,
    first_factor_by_norm,
    recipe_runs,
    recipe_table,
    render_by_norm,
    render_grid,
    render_recipes,
    render_unfinished,
    unfinished_cells,
)


def recipe_report(
    runs: pd.DataFrame,
    factors: list[str],
    skipped: Iterable[Skipped] = (),
    study: str = "",
    catalog: NormCatalog | None = None,
) -> tuple[str, dict[str, str | bytes]]:
    """The recipes section of ``summary.md`` and its files: ``recipes.csv``, ``recipe_by_norm.csv``,
    ``recipe_grid.csv`` (with two factors or more) and, for a study varying ``dataset.augment``,
    ``padding_by_norm.png``/``.svg`` (a figure that cannot be drawn is a warning)."""
    skipped = list(skipped)
    table = recipe_table(runs, factors)
    files: dict[str, str | bytes] = {"recipes.csv": table.to_csv(index=False)}
    if table.empty:
        return "", files
    resolved = recipe_runs(runs, factors)
    base = base_values(resolved, factors[1:])
    unfinished = unfinished_cells(skipped, factors)
    by_norm = first_factor_by_norm(table, factors, base)
    files["recipe_by_norm.csv"] = by_norm.to_csv(index=False)
    lines = [
        f"## Recipes ({', '.join(f'`{f}`' for f in factors)}), chosen on validation error",
        "",
        "Each factor's value is read from the run's resolved config; a factor a norm does not have is blank (·)"
        " for it. Every cell is one recipe × norm (runs of different recipes are never averaged together);"
        f" selection metric: final-epoch validation error (`{SELECTION_METRIC}`), never test error.",
        "",
        *render_by_norm(by_norm, factors, base, catalog),
    ]
    figure_factor = PADDING if PADDING in factors else None
    if figure_factor:
        try:
            from src.report.recipe_plots import factor_by_norm_figure

            keep = pd.Series(True, index=resolved.index)
            for factor in factors:
                if factor != figure_factor:
                    keep &= resolved[factor].isin([base.get(factor), ABSENT])
            drawn = factor_by_norm_figure(resolved[keep], figure_factor, study, base, catalog)
            files["padding_by_norm.png"], files["padding_by_norm.svg"] = drawn
            lines += [f"![validation error by `{figure_factor}` and norm](padding_by_norm.png)", ""]
        except Exception as error:  # a figure is never worth losing the tables for
            warnings.warn(f"{study}: padding_by_norm not drawn: {type(error).__name__}: {error}", stacklevel=2)
    if len(factors) > 1:
        grid = factor_grid(table, factors, base, unfinished)
        files["recipe_grid.csv"] = grid.to_csv(index=False)
        lines += render_grid(grid, factors, base, catalog)
    lines.append(render_recipes(table, factors, catalog))
    others = sum(1 for item in skipped if not item.config)
    lines += render_unfinished(unfinished, factors, others)
    return "\n".join(lines), files
