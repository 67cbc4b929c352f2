"""What the report knows about a norm: only what the norm says about itself.

Each run record carries ``norm_info`` (label, family, plot order and colour, batch dependence, affine
shift), written from the norm's own ``info:`` block in ``conf/norm/<name>.yaml``; flattened runs carry
it as ``norm_label``, ``norm_order``, ``norm_color``, … For runs recorded before records carried it (a
committed ``runs.csv``), and for published rows naming a norm no run used, the same block is read from
``conf/norm/<name>.yaml`` directly (plain YAML). A norm known to neither is shown by its name, after the
known ones, in a colour of matplotlib's cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from src.run.provenance import PROJECT_ROOT

NORM_CONF = PROJECT_ROOT / "conf" / "norm"
UNKNOWN_ORDER = 10_000
FALLBACK_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354")


@dataclass(frozen=True)
class NormStyle:
    """How tables and plots show one norm."""

    label: str
    order: int = UNKNOWN_ORDER
    color: str | None = None


@cache
def _configured(name: str, conf: Path = NORM_CONF) -> dict[str, Any]:
    """The ``info:`` block of ``conf/norm/<name>.yaml`` (empty when there is none)."""
    path = conf / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    info = data.get("info") if isinstance(data, dict) else None
    return dict(info) if isinstance(info, dict) else {}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class NormCatalog:
    """Label, order and colour per norm name: from the runs' ``norm_*`` columns, else the norm's YAML."""

    def __init__(self, known: dict[str, dict[str, Any]] | None = None):
        self.known = {str(name): info for name, info in (known or {}).items()}

    @classmethod
    def from_runs(cls, runs: pd.DataFrame) -> NormCatalog:
        """The first recorded value of ``norm_label``, ``norm_order``, ``norm_color`` per norm."""
        known: dict[str, dict[str, Any]] = {}
        columns = [c for c in ("norm_label", "norm_order", "norm_color") if c in runs]
        if "norm" in runs:
            for norm, part in runs.groupby(runs["norm"].astype(str)):
                info = {}
                for column in columns:
                    values = [v for v in part[column] if _present(v)]
                    if values:
                        info[column.removeprefix("norm_")] = values[0]
                known[str(norm)] = info
        return cls(known)

    def style(self, norm: str) -> NormStyle:
        norm = str(norm)
        info = {**_configured(norm), **self.known.get(norm, {})}
        order = info.get("order")
        return NormStyle(
            label=str(info.get("label") or norm),
            order=int(order) if _present(order) else UNKNOWN_ORDER,
            color=str(info["color"]) if _present(info.get("color")) else None,
        )

    def label(self, norm: str) -> str:
        return self.style(norm).label

    def rank(self, norm: str) -> tuple[int, str]:
        """Sort key: the norm's declared order, then its name."""
        return (self.style(norm).order, str(norm))

    def sorted(self, norms: Any) -> list[str]:
        return sorted({str(n) for n in norms}, key=self.rank)

    def sort_key(self, norms: pd.Index) -> pd.Index:
        """For ``DataFrame.sort_index(key=…)`` on an index of norm names (rows that are not norms last)."""
        return pd.Index([self.rank(n) for n in norms])

    def colors(self, norms: list[str]) -> dict[str, str]:
        """Each norm's declared colour; norms without one get distinct fallback colours."""
        spare = iter(FALLBACK_COLORS)
        return {n: self.style(n).color or next(spare, "k") for n in dict.fromkeys(str(n) for n in norms)}
