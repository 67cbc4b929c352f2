"""A run's config as report columns: the flattened resolved config of each record, and the keys a set of
records varies (the sweep's factors), so that a table or a claim's cell can name any config key."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from src.run.records import RunRecord

UNCOMPARED = {"report", "logger", "hydra", "study", "norm.info", "force", "resume"}


def config_leaves(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` for every leaf of a resolved config, lists as JSON text, less the keys
    that only steer a run's output (report, logger, hydra, study) and the norm's presentation."""
    leaves: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in UNCOMPARED:
            continue
        if isinstance(value, dict):
            leaves.update(config_leaves(value, f"{name}."))
        else:
            leaves[name] = json.dumps(value) if isinstance(value, list) else value
    return leaves


def with_config_columns(runs: pd.DataFrame, records: list[RunRecord], columns: list[str]) -> pd.DataFrame:
    """``runs`` with a column for each config key in ``columns`` it lacks, read from the records' resolved
    configs (a key the study did not vary has no column until a claim names it, e.g.
    ``where: {standardize_weights: true}`` while every run so far had it true)."""
    missing = [c for c in dict.fromkeys(columns) if c not in runs and c]
    if not missing or runs.empty or "run_dir" not in runs:
        return runs
    leaves = {str(record.run_dir): config_leaves(record.config) for record in records}
    runs = runs.copy()
    for column in missing:
        values = runs["run_dir"].map(lambda run_dir, key=column: leaves.get(str(run_dir), {}).get(key))
        if values.notna().any():
            runs[column] = values
    return runs


def varying_config(records: list[RunRecord]) -> list[str]:
    """The config keys whose values differ between ``records``: the sweep's factors, which become runs.csv
    columns so that a claim's cell can name any of them (e.g. ``optim.warmup_epochs``)."""
    seen: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for record in records:
        for key, value in config_leaves(record.config).items():
            seen.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
            counts[key] = counts.get(key, 0) + 1
    return sorted(key for key in seen if len(seen[key]) > 1 or counts[key] < len(records))
