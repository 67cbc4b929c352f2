"""The convergence gate: a claim comparing norms is judged only on networks that finished training.

A cross-norm claim (its cells hold two norms or more) passes the gate when, for every compared cell,

1. **the curve has flattened**: the cell's mean validation error fell by at most ``max_val_drop``
   points over the last ``last_epochs`` epochs (read from the runs' ``metrics.csv``), and
2. **no norm's training loss is far above another's**: the cell's mean final training loss is at most
   ``max_train_loss_ratio`` times the lowest of the other norms' cells in the claim. (The GN paper,
   Figure 4, has GN's training error at or below BN's at batch 32; a norm far behind in training loss
   has not been trained as far.)

A cell failing either check makes the claim **not assessable: <norm> undertrained**, with the numbers.
Records without a curve leave check 1 undone, and the report says so. For a failed check the gate
suggests a schedule: the epochs at which a fit ``a + b/e`` of the curve's tail would pass
(:mod:`src.report.curves`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from src.report.curves import epochs_to_loss, epochs_to_plateau, mean_curve, val_drop

PASSED = "passed"
FAILED = "failed"
PARTLY = "partly checked"
NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class GateRule:
    """The gate's thresholds (``report.convergence`` in a study file, or a claim's own ``convergence``)."""

    last_epochs: int = 3
    max_val_drop: float = 0.5
    max_train_loss_ratio: float = 1.25

    @classmethod
    def of(cls, *blocks: dict[str, Any] | None) -> GateRule:
        values: dict[str, Any] = {}
        for block in blocks:
            values.update(block or {})
        return cls(
            int(values.get("last_epochs", cls.last_epochs)),
            float(values.get("max_val_drop", cls.max_val_drop)),
            float(values.get("max_train_loss_ratio", cls.max_train_loss_ratio)),
        )

    def describe(self) -> str:
        return (
            f"validation error fell ≤ {self.max_val_drop:g} points over the last {self.last_epochs} epochs, and"
            f" final train loss ≤ {self.max_train_loss_ratio:g}× the other norm's"
        )


@dataclass
class GateResult:
    status: str
    undertrained: list[str] = field(default_factory=list)  # cells, "gn@32"
    lines: list[str] = field(default_factory=list)
    epochs: list[str] = field(default_factory=list)  # what the curves suggest, for the failed cells

    @property
    def norms(self) -> list[str]:
        return sorted({cell.split("@")[0] for cell in self.undertrained})


def _cell_runs(runs: pd.DataFrame, cell: Any) -> pd.DataFrame:
    """The runs of ``cell`` (a :class:`src.report.claims.Cell`: its own mask over any columns)."""
    return runs[cell.mask(runs)]


def check(cells: list[Any], runs: pd.DataFrame, curves: dict[str, pd.DataFrame], rule: GateRule) -> GateResult:
    """The gate for a claim over ``cells`` (objects with ``norm`` and ``mask(runs)``)."""
    if len({c.norm for c in cells}) < 2:
        return GateResult(NOT_APPLICABLE)
    result = GateResult(PASSED)
    unchecked: list[str] = []
    cell_curves: dict[str, pd.DataFrame | None] = {}
    losses: dict[Any, float] = {}
    for cell in cells:
        part = _cell_runs(runs, cell)
        if part.empty:
            continue
        losses[cell] = float(pd.to_numeric(part["train_loss"], errors="coerce").mean())
        found = [curves[d] for d in part["run_dir"].astype(str) if d in curves]
        curve = mean_curve(found) if len(found) == len(part) else None
        cell_curves[str(cell)] = curve
        drop = val_drop(curve, rule.last_epochs) if curve is not None else math.nan
        if not math.isfinite(drop):
            unchecked.append(str(cell))
            continue
        line = f"{cell}: validation error fell {drop:+.2f} over the last {rule.last_epochs} epochs"
        if drop > rule.max_val_drop:
            result.undertrained.append(str(cell))
            result.lines.append(line + f" (> {rule.max_val_drop:g}: still improving)")
            suggested = epochs_to_plateau(curve, rule.last_epochs, rule.max_val_drop)
            if suggested:
                result.epochs.append(f"{cell}: about {suggested} epochs for its curve to flatten (fit a + b/epoch)")
        else:
            result.lines.append(line)
    for cell, loss in losses.items():
        others = [v for c, v in losses.items() if c.norm != cell.norm and math.isfinite(v) and v > 0]
        if not others or not math.isfinite(loss):
            continue
        lowest = min(others)
        ratio = loss / lowest
        text = f"{cell}: final train loss {loss:.3f}, {ratio:.2f}× the lowest other norm's ({lowest:.3f})"
        if ratio > rule.max_train_loss_ratio:
            if str(cell) not in result.undertrained:
                result.undertrained.append(str(cell))
            result.lines.append(text + f" (> {rule.max_train_loss_ratio:g}×)")
            curve = cell_curves.get(str(cell))
            target = rule.max_train_loss_ratio * lowest
            suggested = epochs_to_loss(curve, target) if curve is not None else None
            if suggested:
                result.epochs.append(
                    f"{cell}: about {suggested} epochs to reach train loss {target:.3f} (fit a + b/epoch)"
                )
            elif curve is None:
                result.epochs.append(f"{cell}: no curve recorded to size a schedule (train with logger=csv)")
        else:
            result.lines.append(text)
    if unchecked:
        result.lines.append(f"curve flatness not checked for {', '.join(unchecked)}: no per-epoch curve recorded")
    if result.undertrained:
        result.status = FAILED
    elif unchecked:
        result.status = PARTLY
    return result
