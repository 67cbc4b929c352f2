"""The command lines that produced a study's runs, rebuilt from their records.

Each record carries ``launch`` (primary config, ``--config-dir``, Hydra overrides, multirun or not) and
its own task overrides (a JSON list in the ``overrides`` column). Runs launched alike are one sweep;
its command lists every overridden key once with the values its runs took, in Hydra's sweep syntax
(``norm=bn,gn batch=2,32``).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pandas as pd


def _ordered(values: list[str]) -> list[str]:
    """Numbers in numeric order, anything else in the order first seen."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def sweep_command(launch: dict[str, Any], overrides: list[list[str]]) -> str:
    """One command line that runs all of ``overrides`` (each run's task overrides) the way ``launch`` says."""
    parts = ["python", "-m", "src.train"]
    if launch.get("multirun"):
        parts.append("-m")
    if launch.get("config_dir"):
        parts += ["--config-dir", str(launch["config_dir"])]
    if launch.get("config_name") and launch["config_name"] != "train":
        parts += ["--config-name", str(launch["config_name"])]
    parts += [str(item) for item in launch.get("hydra_overrides") or []]
    values: dict[str, list[str]] = {}
    for run in overrides:
        for item in run:
            key, _, value = item.partition("=")
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    parts += [f"{key}={','.join(_ordered(seen))}" for key, seen in values.items()]
    return shlex.join(parts)


def sweep_commands(runs: pd.DataFrame) -> list[str]:
    """The commands of the sweeps among ``runs`` (records without a ``launch`` are left out)."""
    if "launch" not in runs:
        return []
    commands = []
    for launch, part in runs.dropna(subset=["launch"]).groupby("launch", sort=False):
        overrides = [json.loads(listed) if listed else [] for listed in part["overrides"].fillna("")]
        commands.append(sweep_command(json.loads(str(launch)), overrides))
    return commands
