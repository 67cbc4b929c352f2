"""The command lines that produced a study's runs, rebuilt from their records.

Each record carries ``launch`` (primary config, ``--config-dir``, Hydra overrides, multirun or not) and
its own task overrides (a JSON list in the ``overrides`` column). A command lists every overridden key
once with the values its runs took, in Hydra's sweep syntax (``norm=bn,gn batch=2,32``), which runs every
combination of them; so runs launched alike are split into the fewest groups that are each such a full
grid (:func:`grids`), one command per group, and every command runs exactly runs that were recorded.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from src.run.provenance import PROJECT_ROOT

ANCHORS = ("multirun", "outputs", "debug", "results", "sweeps", "conf")  # folders of a normlab checkout


def project_relative(value: str, root: Path = PROJECT_ROOT) -> str:
    """An absolute path as a path relative to the project: relative to ``root`` when inside it, else from
    the first folder of a normlab checkout it names (``/work/study/multirun/s`` → ``multirun/s``: the
    checkout the runs were launched from); anything else unchanged."""
    if not value.startswith("/"):
        return value
    path = PurePosixPath(value)
    try:
        return str(Path(value).relative_to(root))
    except ValueError:
        pass
    parts = path.parts[1:]
    for index, part in enumerate(parts):
        if part in ANCHORS:
            return str(PurePosixPath(*parts[index:]))
    return value


def _relative_item(item: str) -> str:
    """``key=/abs/path`` → ``key=<project-relative path>``; other items unchanged."""
    key, equals, value = item.partition("=")
    return f"{key}={project_relative(value)}" if equals else project_relative(item)


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
        parts += ["--config-dir", project_relative(str(launch["config_dir"]))]
    if launch.get("config_name") and launch["config_name"] != "train":
        parts += ["--config-name", str(launch["config_name"])]
    parts += [_relative_item(str(item)) for item in launch.get("hydra_overrides") or []]
    values: dict[str, list[str]] = {}
    for run in overrides:
        for item in run:
            key, _, value = item.partition("=")
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    parts += [_relative_item(f"{key}={','.join(_ordered(seen))}") for key, seen in values.items()]
    return shlex.join(parts)


Run = tuple[tuple[str, str], ...]  # one run's overrides as sorted (key, value) pairs


def _is_grid(runs: list[Run]) -> bool:
    """Whether ``runs`` (distinct, with one key set) are every combination of their keys' values."""
    keys = [key for key, _ in runs[0]]
    values = [{dict(run)[key] for run in runs} for key in keys]
    return math.prod(len(v) for v in values) == len(runs)


def grids(overrides: list[list[str]]) -> list[list[list[str]]]:
    """``overrides`` (each run's task overrides) split into the fewest groups that are each a full grid of
    their keys' values (runs with other keys apart; among the splits by one key's value, the one giving
    the fewest groups), so that each group's sweep command runs exactly its runs."""
    order: dict[str, int] = {}
    runs: dict[Run, list[str]] = {}
    for listed in overrides:
        for item in listed:
            order.setdefault(item.partition("=")[0], len(order))
        pairs = tuple(sorted((item.partition("=")[0], item.partition("=")[2]) for item in listed))
        runs.setdefault(pairs, listed)
    by_keys: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        by_keys.setdefault(tuple(key for key, _ in run), []).append(run)
    groups = [group for part in by_keys.values() for group in _split(part)]
    return [[runs[run] for run in group] for group in groups]


def _split(runs: list[Run]) -> list[list[Run]]:
    if not runs or not runs[0] or _is_grid(runs):
        return [runs]
    best: list[list[Run]] | None = None
    for index in range(len(runs[0])):
        values = {run[index][1] for run in runs}
        if len(values) < 2:
            continue
        parts = [g for v in _ordered(sorted(values)) for g in _split([run for run in runs if run[index][1] == v])]
        if best is None or len(parts) < len(best):
            best = parts
    return best or [[run] for run in runs]


def sweep_commands(runs: pd.DataFrame) -> list[str]:
    """The commands of the sweeps among ``runs`` (records without a ``launch`` are left out)."""
    if "launch" not in runs:
        return []
    commands = []
    for launch, part in runs.dropna(subset=["launch"]).groupby("launch", sort=False):
        overrides = [json.loads(listed) if listed else [] for listed in part["overrides"].fillna("")]
        commands += [sweep_command(json.loads(str(launch)), group) for group in grids(overrides)]
    return commands
