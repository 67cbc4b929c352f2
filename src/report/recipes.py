"""A recipe pilot's table: validation error per norm under each training recipe, to choose one recipe.

A study whose ``report:`` block lists ``factors`` (config keys that its sweeps varied, e.g.
``optim.base_batch``, ``model.zero_init_last``, ``norm_groups``) gets ``recipes.csv`` and a section of
``summary.md``: for every recipe (one combination of factor values) and norm, the mean validation error
over seeds, and the recipe's score, the mean over the norms of those means. Recipes that ran every norm are ranked on
validation error only; test error is shown beside them and never used to choose. A recipe counts only
for the norms it ran (a factor a norm ignores, such as ``norm_groups`` for bn, is left blank for it and
the norm's runs join every recipe that agrees on the other factors).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import yaml

SELECTION_METRIC = "val_error"
ABSENT = "·"


def as_value(text: Any) -> str:
    """One spelling per value: ``true``, ``True`` and a boolean all read ``True``; ``32`` and 32 read ``32``."""
    if isinstance(text, str):
        try:
            text = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return str(text)


def override_values(overrides: str, factors: list[str]) -> dict[str, str]:
    """The value of each factor in a run's overrides (a JSON list of ``key=value``), ``·`` when absent."""
    items = json.loads(overrides) if isinstance(overrides, str) and overrides else []
    found = {}
    for item in items:
        key, _, value = str(item).lstrip("+~").partition("=")
        found[key] = as_value(value)
    return {factor: found.get(factor, ABSENT) for factor in factors}


def recipe_runs(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """``runs`` with one column per factor: the value in the run's overrides; where a run did not set a
    factor that other runs of its norm set, the resolved config's value (the column the report carries
    when the value varies; without the column every run had the value the others set); where no run of
    its norm set it, ``·`` (the norm ignores the factor)."""
    values = pd.DataFrame([override_values(o, factors) for o in runs["overrides"]], index=runs.index)
    for factor in factors:
        set_by = set(runs.loc[values[factor] != ABSENT, "norm"])
        fill = (values[factor] == ABSENT) & runs["norm"].isin(set_by)
        if not fill.any():
            continue
        if factor in runs:
            values.loc[fill, factor] = runs.loc[fill, factor].map(
                lambda value: ABSENT if pd.isna(value) else as_value(value)
            )
        else:  # no column: the value did not vary across the counted runs, so it is the one the others set
            given = set(values.loc[values[factor] != ABSENT, factor])
            if len(given) == 1:
                values.loc[fill, factor] = given.pop()
    return pd.concat([runs.drop(columns=[f for f in factors if f in runs]), values], axis=1)


def recipe_table(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per recipe × norm: runs, mean validation, test error and final train loss; plus the
    recipe's score (mean over norms of the mean validation error) and its rank (1 = lowest)."""
    table = recipe_runs(runs, factors)
    rows: list[dict[str, Any]] = []
    for key, part in table.groupby([*factors, "norm"], sort=True):
        row = dict(zip([*factors, "norm"], key, strict=True))
        row.update(
            n=len(part),
            val_error=part[SELECTION_METRIC].mean(),
            val_error_sd=part[SELECTION_METRIC].std(ddof=1) if len(part) > 1 else float("nan"),
            test_error=part["test_error"].mean(),
            train_loss=part["train_loss"].mean(),
        )
        rows.append(row)
    result = pd.DataFrame(rows)
    if result.empty:
        return result
    result = _spread_absent(result, factors)
    grouped = result.groupby(factors)
    score = grouped["val_error"].mean().rename("recipe_val_error")
    complete = (grouped["norm"].nunique() == result["norm"].nunique()).rename("complete")
    # only recipes that ran every norm are ranked: a mean over fewer norms is not comparable
    rank = score.where(complete).rank(method="min").astype("Int64").rename("recipe_rank")
    for column in (score, complete, rank):
        result = result.merge(column, left_on=factors, right_index=True)
    return result.sort_values(["recipe_rank", "recipe_val_error", *factors, "norm"]).reset_index(drop=True)


def _spread_absent(table: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """A norm that never set a factor (``·``) joins every recipe whose other factors agree with its."""
    for factor in factors:
        values = sorted(set(table[factor]) - {ABSENT})
        absent = table[table[factor] == ABSENT]
        norms_with = set(table.loc[table[factor] != ABSENT, "norm"])
        spread = [absent.assign(**{factor: value}) for value in values if len(absent)]
        table = pd.concat([table[table[factor] != ABSENT], *spread], ignore_index=True) if values else table
        overlap = norms_with & set(absent["norm"])
        if overlap:
            raise ValueError(f"report.factors: {factor} is set for some runs of {sorted(overlap)} and not for others")
    return table


def render_recipes(table: pd.DataFrame, factors: list[str]) -> str:
    """Markdown: recipes ranked by mean validation error over norms, a column per norm."""
    if table.empty:
        return ""
    norms = sorted(set(table["norm"]))
    lines = [
        "## Recipes, ranked on validation error",
        "",
        "Mean validation error (%) over seeds (n runs) for each norm under each recipe; the recipe's score is "
        "the mean over norms. Test error is in `recipes.csv` and is not used to choose. A recipe that has "
        "not run every norm is not ranked (–).",
        "",
        "| rank | " + " | ".join(factors) + " | " + " | ".join(norms) + " | score |",
        "|" + "---|" * (len(factors) + len(norms) + 2),
    ]
    for values, part in table.groupby(factors, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        rank = part["recipe_rank"].iloc[0]
        rank = "–" if pd.isna(rank) else int(rank)
        by_norm = part.set_index("norm")
        cells = [
            f"{by_norm.at[norm, 'val_error']:.2f} ({int(by_norm.at[norm, 'n'])})" if norm in by_norm.index else ""
            for norm in norms
        ]
        score = part["recipe_val_error"].iloc[0]
        lines.append(f"| {rank} | " + " | ".join(map(str, values)) + " | " + " | ".join(cells) + f" | {score:.2f} |")
    return "\n".join(lines) + "\n"
