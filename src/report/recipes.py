"""A recipe pilot's tables: validation error per norm under each training recipe, to choose one recipe.

A study whose ``report:`` block lists ``factors`` (config keys that its sweeps varied, e.g.
``dataset.augment``, ``norm.layer.min_group_size``, ``optim.base_batch``) gets, in ``summary.md`` and as
CSV files:

- ``recipe_by_norm.csv``: the first factor × norm, the other factors at their base value (the value
  with the most completed runs, e.g. GN's default ``min_group_size`` 2): mean validation error, its SD
  over seeds and n per cell, and each value's cost relative to the norm's best value (percentage points);
- ``recipe_grid.csv``: every further factor × the first, for the norms that have it (``min_group_size``
  for gn): only completed cells carry numbers; cells whose runs did not finish are named as such;
- ``recipes.csv``: one row per recipe (a combination of factor values) × norm, and the recipe's score,
  the mean over the norms of those means, ranked (1 = lowest). The choice rule: one recipe for every
  norm, the lowest score among the recipes that ran every norm.

A run's factor values are read from its resolved config (the flattened config columns the report loader
adds, :func:`src.report.config_columns.with_config_columns`), so a default that no override names (gn's
``min_group_size`` 2) is shown as its value; the run's overrides are read only where no config column
exists (a report from an old ``runs.csv``). A factor a norm does not have (``min_group_size`` for bn) is
blank (``·``) for that norm, and its runs join every recipe that agrees on the other factors. Every cell
is one recipe × norm: runs of different recipes are never averaged into one "± SD over seeds".
Selection is on validation error (``val_error``) only; test error is reported beside it, never used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import yaml

from src.report.config_columns import config_leaves
from src.report.load import Skipped
from src.report.norm_info import NormCatalog
from src.report.stats import Estimate, diff_ci_from_summary
from src.report.tables import format_cell

SELECTION_METRIC = "val_error"
ABSENT = "·"
PADDING = "dataset.augment"  # a study varying it gets padding_by_norm.png/.svg


def missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA (a config key the run's config does not have)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def as_value(value: Any) -> str:
    """One spelling per value: ``true``, ``True`` and a boolean read ``True``; ``2``, ``"2"`` and 2.0 (a
    config column with gaps is float) read ``2``; a missing value reads ``·``."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if missing(value):
        return ABSENT
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def value_key(value: str) -> tuple[int, float, str]:
    """Sort key: numbers numerically (4 before 16), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def override_values(overrides: str, factors: list[str]) -> dict[str, str]:
    """The value of each factor in a run's overrides (a JSON list of ``key=value``), ``·`` when absent."""
    items = json.loads(overrides) if isinstance(overrides, str) and overrides else []
    found = {}
    for item in items:
        key, _, value = str(item).lstrip("+~").partition("=")
        found[key] = as_value(value)
    return {factor: found.get(factor, ABSENT) for factor in factors}


def config_values(config: dict[str, Any], factors: list[str]) -> dict[str, str]:
    """The value of each factor in a resolved config (a record's ``config``), ``·`` where it has none."""
    leaves = config_leaves(config)
    return {factor: as_value(leaves.get(factor)) for factor in factors}


def recipe_runs(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """``runs`` with one text column per factor: ``·`` where the run's norm does not have the factor, else
    the run's resolved-config value (the column the report loader adds), else the value in its overrides,
    else (no config column: an old runs.csv) the one value the other runs set.

    A norm has a factor when one of its runs set it in its overrides, when the factor is a key of the norm's
    own config (``norm.…``, e.g. ``norm.layer.min_group_size``: gn's default 2 although no override names
    it; bn's config has no such key), or when its runs' config values differ. A top-level key a norm never
    chose (``norm_groups`` for bn: in its config, never set, unused) is not one of its factors."""
    overrides = runs["overrides"] if "overrides" in runs else pd.Series("", index=runs.index)
    values = pd.DataFrame([override_values(o, factors) for o in overrides], index=runs.index, columns=factors)
    for factor in factors:
        overridden = values[factor]
        resolved = runs[factor].map(as_value) if factor in runs else pd.Series(ABSENT, index=runs.index)
        value = resolved.where(resolved != ABSENT, overridden)
        given = set(overridden[overridden != ABSENT])
        if factor not in runs and len(given) == 1:  # the value did not vary: the one the others set
            value = value.where(value != ABSENT, given.pop())
        has = set()
        for norm, index in runs.groupby("norm").groups.items():
            chosen = resolved[index][resolved[index] != ABSENT]
            own = factor.startswith("norm.") and len(chosen) > 0
            if (overridden[index] != ABSENT).any() or own or chosen.nunique() > 1:
                has.add(norm)
        values[factor] = value.where(runs["norm"].isin(has), ABSENT)
    return pd.concat([runs.drop(columns=[f for f in factors if f in runs]), values], axis=1)


def recipe_table(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per recipe × norm: n runs, mean and SD over seeds of validation error, mean test error and
    final train loss, ``norm_lacks`` (the factors the norm does not have: its runs are shared by every
    value of them); plus the recipe's score (mean over norms of the mean validation error), whether it
    ran every norm, and its rank among those that did (1 = lowest)."""
    table = recipe_runs(runs, factors)
    rows: list[dict[str, Any]] = []
    for key, part in table.groupby([*factors, "norm"], sort=True):
        row = dict(zip([*factors, "norm"], key, strict=True))
        values = pd.to_numeric(part[SELECTION_METRIC], errors="coerce")
        row.update(
            n=len(part),
            val_error=values.mean(),
            val_error_sd=values.std(ddof=1) if len(part) > 1 else math.nan,
            test_error=pd.to_numeric(part["test_error"], errors="coerce").mean(),
            train_loss=pd.to_numeric(part["train_loss"], errors="coerce").mean(),
            norm_lacks=" ".join(f for f in factors if row[f] == ABSENT),
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
    order = ["recipe_rank", "recipe_val_error", *factors, "norm"]
    return result.sort_values(order, key=_by_value(factors)).reset_index(drop=True)


def _spread_absent(table: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """A norm that does not have a factor (``·``) joins every recipe whose other factors agree with its."""
    for factor in factors:
        values = sorted(set(table[factor]) - {ABSENT}, key=value_key)
        absent = table[table[factor] == ABSENT]
        norms_with = set(table.loc[table[factor] != ABSENT, "norm"])
        spread = [absent.assign(**{factor: value}) for value in values if len(absent)]
        table = pd.concat([table[table[factor] != ABSENT], *spread], ignore_index=True) if values else table
        overlap = norms_with & set(absent["norm"])
        if overlap:
            raise ValueError(f"report.factors: {factor} is set for some runs of {sorted(overlap)} and not for others")
    return table


def base_values(runs: pd.DataFrame, factors: list[str]) -> dict[str, str]:
    """Each factor's base value: the one with the most completed runs (ties: the first in order), among
    the runs that have the factor; ``runs`` as :func:`recipe_runs` returns them."""
    base = {}
    for factor in factors:
        counts = runs.loc[runs[factor] != ABSENT, factor].value_counts()
        if len(counts):
            base[factor] = sorted(counts.index, key=lambda v, c=counts: (-c[v], value_key(v)))[0]
    return base


def first_factor_by_norm(table: pd.DataFrame, factors: list[str], base: dict[str, str]) -> pd.DataFrame:
    """The first factor × norm, every other factor at its base value: n, mean and SD of validation error,
    mean test error, ``cost`` (mean minus the lowest mean of that norm over the first factor's values, in
    percentage points: 0 for the norm's best) and the recipe's score and rank. A norm that lacks one of
    the other factors shows it blank."""
    first, others = factors[0], factors[1:]
    keep = pd.Series(True, index=table.index)
    for factor in others:
        keep &= table[factor] == base.get(factor, ABSENT)
    part = table[keep].copy()
    part["cost"] = part["val_error"] - part.groupby("norm")["val_error"].transform("min")
    for factor in others:
        lacking = part["norm_lacks"].str.split().map(lambda lacks, f=factor: f in lacks)
        part.loc[lacking, factor] = ""
    columns = [first, "norm", *others, "n", "val_error", "val_error_sd", "cost", "test_error"]
    columns += ["recipe_val_error", "recipe_rank"]
    return part[columns].sort_values([first, "norm"], key=_by_value([first])).reset_index(drop=True)


def factor_grid(
    table: pd.DataFrame, factors: list[str], base: dict[str, str], unfinished: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Each further factor × the first, for the norms that have it, the remaining factors at base: one
    row per completed cell (n, mean and SD of validation error, ``vs_base``: the difference to the
    factor's base value in the same column), and one row per cell whose runs did not finish (``n`` 0,
    ``not_counted`` runs)."""
    first = factors[0]
    rows = []
    for factor in factors[1:]:
        has = table[~table["norm_lacks"].str.split().map(lambda lacks, f=factor: f in lacks)]
        for other in factors[1:]:
            if other != factor:
                has = has[has[other] == base.get(other, ABSENT)]
        reference = has[has[factor] == base.get(factor)].set_index(["norm", first])
        for record in has.to_dict("records"):
            key = (record["norm"], record[first])
            ref = reference.loc[key] if key in reference.index else None
            vs_base = (
                diff_ci_from_summary(summary(record), summary(ref))
                if ref is not None
                else Estimate(math.nan, math.nan, math.nan, (0,))
            )
            rows.append(
                {
                    "factor": factor,
                    "value": record[factor],
                    "norm": record["norm"],
                    first: record[first],
                    "n": record["n"],
                    "val_error": record["val_error"],
                    "val_error_sd": record["val_error_sd"],
                    "vs_base": vs_base.value,
                    "vs_base_low": vs_base.low,
                    "vs_base_high": vs_base.high,
                    "not_counted": 0,
                }
            )
        if unfinished is not None and not unfinished.empty and factor in unfinished:
            done = {(r["norm"], r["value"], r[first]) for r in rows if r["factor"] == factor}
            norms = set(has["norm"])
            for record in unfinished.to_dict("records"):
                key = (record["norm"], record[factor], record[first])
                at_base = all(record[o] in (base.get(o), ABSENT) for o in factors[1:] if o != factor)
                if record["norm"] in norms and record[factor] != ABSENT and at_base and key not in done:
                    cell = {"factor": factor, "value": record[factor], "norm": record["norm"], first: record[first]}
                    rows.append({**cell, "n": 0, "not_counted": record["runs"], "status": record["status"]})
    columns = ["factor", "norm", "value", first, "n", "val_error", "val_error_sd", "vs_base", "vs_base_low"]
    columns += ["vs_base_high", "not_counted", "status"]
    grid = pd.DataFrame(rows, columns=columns)
    grid["order"] = grid["factor"].map(factors.index)  # the study's order of factors
    grid = grid.sort_values(["order", "norm", "value", first], key=_by_value(["value", first]))
    return grid.drop(columns="order").reset_index(drop=True)


def unfinished_cells(skipped: Iterable[Skipped], factors: list[str]) -> pd.DataFrame:
    """The runs not counted whose record names its recipe (its resolved config), per recipe × norm: how
    many and with which status; runs without a readable record are left to the report's own list."""
    rows = []
    for item in skipped:
        if not item.config:
            continue
        norm = (item.cell or "").split("@")[0] or str((item.config.get("norm") or {}).get("name"))
        rows.append({**config_values(item.config, factors), "norm": norm, "status": item.status or "?"})
    if not rows:
        return pd.DataFrame(columns=[*factors, "norm", "status", "runs"])
    frame = pd.DataFrame(rows).groupby([*factors, "norm", "status"]).size().rename("runs").reset_index()
    return frame.sort_values(["norm", *factors], key=_by_value(factors)).reset_index(drop=True)


def _by_value(columns: list[str]):
    """A ``sort_values`` key ordering ``columns`` by :func:`value_key` (4 before 16)."""
    return lambda column: column.map(value_key) if column.name in columns else column


def signed(value: float) -> str:
    """A difference in percentage points: ``+0.27``, ``-0.50``, ``±0.00`` when it rounds to zero."""
    return "±0.00" if round(value, 2) == 0 else f"{value:+.2f}"


def _norms(values: Iterable[str], catalog: NormCatalog | None) -> list[str]:
    return (catalog or NormCatalog()).sorted(values)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_by_norm(by_norm: pd.DataFrame, factors: list[str], base: dict[str, str], catalog=None) -> list[str]:
    """Markdown: the first factor × norm (mean ± SD (n)), the mean over norms, and each value's cost."""
    first = factors[0]
    norms = _norms(by_norm["norm"], catalog)
    values = sorted(set(by_norm[first]), key=value_key)
    cell = by_norm.set_index([first, "norm"])
    at = "; ".join(f"`{f}` = {base[f]} where the norm has it" for f in factors[1:] if f in base)
    lines = [
        f"### `{first}` × norm{f' ({at})' if at else ''}",
        "",
        "Validation error (%), mean ± SD over seeds (n runs) of one recipe each; the last column is the mean"
        " over norms (the recipe's score, – when a norm is missing):",
        "",
    ]
    rows = []
    for value in values:
        cells = [_cell(cell, (value, norm)) for norm in norms]
        scores = by_norm.loc[by_norm[first] == value, "recipe_val_error"]
        complete = all((value, norm) in cell.index for norm in norms)
        rows.append([value, *cells, f"{scores.iloc[0]:.2f}" if complete else "–"])
    lines += _table([first, *norms, "mean over norms"], rows)
    lines += ["", f"Cost of each `{first}` relative to the norm's best (percentage points of validation error):", ""]
    rows = []
    for value in values:
        costs = [cell.at[(value, norm), "cost"] if (value, norm) in cell.index else math.nan for norm in norms]
        rows.append([value, *("–" if missing(c) else "best" if c == 0 else f"+{c:.2f}" for c in costs)])
    return [*lines, *_table([first, *norms], rows), ""]


def _cell(indexed: pd.DataFrame, key: Any) -> str:
    """``mean ± SD (n)`` of one indexed row, ``–`` when there is none."""
    if key not in indexed.index:
        return "–"
    row = indexed.loc[key]
    return format_cell(float(row["val_error"]), float(row["val_error_sd"]), int(row["n"]))


def summary(cell: Any) -> tuple[float, float, int]:
    """A cell's (mean, SD, n) of validation error."""
    return float(cell["val_error"]), float(cell["val_error_sd"]), int(cell["n"])


def render_grid(grid: pd.DataFrame, factors: list[str], base: dict[str, str], catalog=None) -> list[str]:
    """Markdown: each further factor × the first, completed cells only, for the norms that have it."""
    first, lines = factors[0], []
    columns = sorted(set(grid[first]), key=value_key)
    for factor, part in grid.groupby("factor", sort=False):
        lines += [
            f"### `{factor}` × `{first}` ({', '.join(_norms(part['norm'], catalog))})",
            "",
            f"Validation error (%), mean ± SD over seeds (n runs), and in brackets the difference to `{factor}`"
            f" = {base.get(factor)} in the same column with its 95 % Welch interval. Only completed cells carry"
            " numbers; a cell whose runs did not finish says so, and is not part of any mean.",
            "",
        ]
        rows = []
        for (norm, value), row_part in part.groupby(["norm", "value"], sort=False):
            indexed = row_part.set_index(first)
            row = [norm, value]
            for column in columns:
                if column not in indexed.index:
                    row.append("–")
                elif indexed.at[column, "n"] == 0:
                    row.append(f"not finished ({int(indexed.at[column, 'not_counted'])} runs)")
                else:
                    item = indexed.loc[column]
                    text = format_cell(float(item["val_error"]), float(item["val_error_sd"]), int(item["n"]))
                    delta = item["vs_base"]
                    if value == base.get(factor) or missing(delta):
                        row.append(text)
                    elif missing(item["vs_base_low"]):
                        row.append(f"{text} [{signed(delta)}]")
                    else:
                        interval = f"{item['vs_base_low']:.2f}, {item['vs_base_high']:.2f}"
                        row.append(f"{text} [{signed(delta)} ({interval})]")
            rows.append(row)
        rows.sort(key=lambda r: ((catalog or NormCatalog()).rank(r[0]), value_key(r[1])))
        lines += [*_table(["norm", factor, *columns], rows), ""]
    return lines


def render_recipes(table: pd.DataFrame, factors: list[str], catalog: NormCatalog | None = None) -> str:
    """Markdown: recipes ranked by their score, a column per norm (mean ± SD (n) of one recipe each)."""
    if table.empty:
        return ""
    norms = _norms(table["norm"], catalog)
    lacking = sorted({n for n, lacks in zip(table["norm"], table["norm_lacks"], strict=True) if lacks})
    shared = f" {', '.join(lacking)}: the same runs under every value of a factor the norm does not have."
    lines = [
        "### Recipes, ranked on validation error",
        "",
        "Choice rule: one recipe for every norm, the one with the lowest score, the mean over the norms of each"
        " norm's mean validation error (%) over seeds; a recipe that has not run every norm is not ranked (–)."
        " Cells: mean ± SD over seeds (n runs) of that recipe and norm. Test error is in `recipes.csv` and is"
        " not used to choose." + (shared if lacking else ""),
        "",
    ]
    rows = []
    for values, part in table.groupby(factors, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        rank = part["recipe_rank"].iloc[0]
        by_norm = part.set_index("norm")
        cells = [_cell(by_norm, norm) if norm in by_norm.index else "" for norm in norms]
        score = part["recipe_val_error"].iloc[0]
        rows.append(["–" if pd.isna(rank) else str(int(rank)), *map(str, values), *cells, f"{score:.2f}"])
    return "\n".join([*lines, *_table(["rank", *factors, *norms, "score"], rows)]) + "\n"


def render_unfinished(unfinished: pd.DataFrame, factors: list[str], others: int) -> list[str]:
    """Markdown: the recipes × norms whose runs did not finish, and runs not counted of unknown recipe."""
    if unfinished.empty and not others:
        return []
    lines = ["### Not finished (not counted in any table)", ""]
    for record in unfinished.to_dict("records"):
        recipe = ", ".join(f"`{f}` = {record[f]}" for f in factors if record[f] != ABSENT)
        lines.append(f"- {record['norm']}, {recipe}: {record['runs']} runs with status '{record['status']}'")
    if others:
        lines.append(f"- {others} runs not counted whose recipe is not recorded (see *Runs not counted*)")
    return [*lines, ""]
