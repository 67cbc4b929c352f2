"""The convergence gate: a claim comparing norms is judged only on networks that finished training.

A cross-norm claim (its cells hold two norms or more) passes the gate when, for every compared cell,

1. **the curve has flattened**: the cell's mean validation error fell by at most ``max_val_drop``
   points over the last ``last_epochs`` epochs (read from the runs' ``metrics.csv``). A schedule that
   anneals the learning rate (its last epoch's rate ≤ ``annealed_below`` × its peak: cosine, step) makes
   every curve fall at its end, whatever the training's state, so for such a cell the check is
   **schedule-aware** instead: where the study also ran the same cell with the next shorter schedule
   (every column equal but ``epochs``), the longer schedule lowered the mean final validation error by at
   most ``max_schedule_gain`` points, i.e. training longer no longer pays. Without a shorter schedule the
   check cannot be made and the report says so (*partly checked*); and
2. **no norm's training loss is far above another's**, for a cell whose curve did not pass check 1 (no
   curve, an annealed schedule without a shorter one, or a failed check): the cell's mean final training loss is at
   most ``max_train_loss_ratio`` times the lowest of the other norms' cells in the claim. It is a proxy
   for "trained as far", used only without the direct evidence of 1: once a cell's curve has flattened
   (or a longer schedule no longer pays), a higher training loss is the norm's own property (BN's noisy
   batch statistics at batch 2, GN paper Figure 4), not undertraining, and the line is shown for
   information.

A cell failing either check makes the claim **not assessable: <norm> undertrained**, with the numbers.
A claim whose subject is the training itself (how a gap between norms changes with the schedule's
length) is about networks before their plateau; such a claim may waive the gate in its own
``convergence: {waived: <reason>}``, and the report shows the gate as *waived* with that reason.
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
WAIVED = "waived"


@dataclass(frozen=True)
class GateRule:
    """The gate's thresholds (``report.convergence`` in a study file, or a claim's own ``convergence``)."""

    last_epochs: int = 3
    max_val_drop: float = 0.5
    max_train_loss_ratio: float = 1.25
    max_schedule_gain: float = 1.0
    annealed_below: float = 0.05
    waived: str = ""  # a claim's reason for not applying the gate (only a claim may waive it)

    @classmethod
    def of(cls, *blocks: dict[str, Any] | None) -> GateRule:
        values: dict[str, Any] = {}
        for block in blocks:
            values.update(block or {})
        return cls(
            int(values.get("last_epochs", cls.last_epochs)),
            float(values.get("max_val_drop", cls.max_val_drop)),
            float(values.get("max_train_loss_ratio", cls.max_train_loss_ratio)),
            float(values.get("max_schedule_gain", cls.max_schedule_gain)),
            float(values.get("annealed_below", cls.annealed_below)),
            str(values.get("waived") or ""),
        )

    def describe(self) -> str:
        return (
            f"validation error fell ≤ {self.max_val_drop:g} points over the last {self.last_epochs} epochs"
            f" (constant learning rate) or, for a schedule that anneals it (last rate ≤ {self.annealed_below:g}×"
            f" the peak), the next shorter schedule of the same cell was worse by ≤ {self.max_schedule_gain:g}"
            f" points; and final train loss ≤ {self.max_train_loss_ratio:g}× the other norm's"
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
    if rule.waived:
        return GateResult(WAIVED, lines=[f"not applied, as the claim states: {rule.waived}"])
    result = GateResult(PASSED)
    unchecked: list[str] = []
    unchecked_annealed: list[str] = []
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
        if curve is not None and annealed(curve, rule.annealed_below):
            _check_schedule(cell, part, runs, rule, result, unchecked_annealed)
            continue
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
    judged = {str(c) for c in losses} - set(unchecked) - set(unchecked_annealed)
    flattened = judged - set(result.undertrained)  # cells whose curve passed check 1
    for cell, loss in losses.items():
        others = [v for c, v in losses.items() if c.norm != cell.norm and math.isfinite(v) and v > 0]
        if not others or not math.isfinite(loss):
            continue
        lowest = min(others)
        ratio = loss / lowest
        text = f"{cell}: final train loss {loss:.3f}, {ratio:.2f}× the lowest other norm's ({lowest:.3f})"
        if ratio > rule.max_train_loss_ratio and str(cell) in flattened:
            result.lines.append(text + " (information: its curve passed check 1, so this does not gate)")
        elif ratio > rule.max_train_loss_ratio:
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
    if unchecked_annealed:
        result.lines.append(
            f"curve flatness not checked for {', '.join(unchecked_annealed)}: the learning rate anneals to its end,"
            " so the last epochs fall whatever the training's state, and the study has no shorter schedule of"
            " the same cell to compare (run one, e.g. half the epochs)"
        )
    if result.undertrained:
        result.status = FAILED
    elif unchecked or unchecked_annealed:
        result.status = PARTLY
    return result


def annealed(curve: pd.DataFrame, below: float) -> bool:
    """Whether the run's learning rate ended at ≤ ``below`` × its peak (a cosine or step schedule)."""
    if "lr" not in curve:
        return False
    rates = pd.to_numeric(curve["lr"], errors="coerce").dropna().to_numpy(dtype=float)
    return len(rates) > 1 and rates.max() > 0 and rates[-1] <= below * rates.max()


def shorter_schedule(cell: Any, part: pd.DataFrame, runs: pd.DataFrame) -> tuple[Any, int, int] | None:
    """``(cell at the next shorter schedule, its epochs, this cell's epochs)``: the runs equal to ``cell`` in
    every column but ``epochs``, at the largest ``epochs`` below this cell's; None without such runs or when
    the cell mixes schedules."""
    if "epochs" not in runs:
        return None
    epochs = set(pd.to_numeric(part["epochs"], errors="coerce").dropna().astype(int))
    if len(epochs) != 1:
        return None
    (length,) = epochs
    base = {k: v for k, v in cell.values if k != "epochs"}
    siblings = runs[type(cell).of(base).mask(runs)]
    shorter = sorted(
        e for e in set(pd.to_numeric(siblings["epochs"], errors="coerce").dropna().astype(int)) if e < length
    )
    if not shorter:
        return None
    return type(cell).of({**base, "epochs": shorter[-1]}), shorter[-1], length


def _check_schedule(
    cell: Any,
    part: pd.DataFrame,
    runs: pd.DataFrame,
    rule: GateRule,
    result: GateResult,
    unchecked: list[str],
) -> None:
    """Check 1 for an annealed schedule: the next shorter schedule of the cell was not much worse."""
    found = shorter_schedule(cell, part, runs) if "val_error" in runs else None
    if found is None:
        unchecked.append(str(cell))
        return
    short_cell, short, length = found
    short_part = runs[short_cell.mask(runs)]
    # the records' final validation error (the curve's last epoch), averaged over each cell's runs
    gain = float(pd.to_numeric(short_part["val_error"], errors="coerce").mean()) - float(
        pd.to_numeric(part["val_error"], errors="coerce").mean()
    )
    if not math.isfinite(gain):
        unchecked.append(str(cell))
        return
    line = (
        f"{cell}: annealed schedule; {short} → {length} epochs lowered the final validation error by {gain:+.2f}"
        f" (means of {len(short_part)} and {len(part)} runs)"
    )
    if gain > rule.max_schedule_gain:
        result.undertrained.append(str(cell))
        result.lines.append(line + f" (> {rule.max_schedule_gain:g}: a longer schedule still pays)")
        result.epochs.append(
            f"{cell}: a schedule longer than {length} epochs (e.g. {2 * length}), until doubling it gains"
            f" ≤ {rule.max_schedule_gain:g} points"
        )
    else:
        result.lines.append(line)
