"""The contrast-stability gate: a claim is judged only where its contrast no longer moves with the schedule.

A network trained for E epochs on a cosine schedule is still improving at affordable budgets: doubling the
schedule lowers every cell's error by points, whatever the norm. That makes a gate on each cell's *level*
(:mod:`src.report.gate`, kept as a displayed diagnostic) refuse every comparison forever. What a claim needs
is that its **contrast** has settled: for each test's contrast θ = Σ c_i m(cell_i) at E epochs, the same
contrast over the same cells at E/2 epochs, and their difference

    Δ = θ(E) − θ(E/2) = Σ c_i m(cell_i @ E) − Σ c_i m(cell_i @ E/2),

estimated with per-cell variances (Welch–Satterthwaite df, :meth:`src.report.stats.CellModel.welch_contrast`)
and its 1 − α interval, for each of the claim's verdict tests (its size tests; a direction test reported
beside them is not gated). With the claim's margin M (``within``, ``margin``, a nonzero ``at_least`` /
``at_most``, ``tolerance``; else ``report.stability.margin``, default 1 point), the same for all its tests:

- **passed** when |Δ̂| ≤ M and the interval's half-width is ≤ M: halving the schedule moved the contrast by
  less than the margin, measured precisely enough that a move of M would have shown;
- **failed** when the interval lies wholly outside [−M, M]: the contrast is still moving by more than
  the claim's margin, so a longer schedule may change the verdict;
- **unsettled** otherwise (too few seeds to tell): the gate gives the seeds per cell at which the interval
  would be narrow enough.

Every verdict that needs the E/2 arm is blocked when that arm is missing (**missing arm**): running less
never decides more. A claim may declare itself a **fixed-budget** claim (``budget: fixed`` on the claim, or
on ``report:`` for all of them): it is then a statement about E epochs exactly, the gate does not apply,
and every table says "at E epochs (fixed budget)"; where the study ran the E/2 arm, each Δ is still shown
beside it, marked as not gating, so a reader sees how far the contrast was still moving. A claim may
waive the gate (``convergence: {waived: <why>}``), and the report shows the reason. Failed, unsettled
and missing-arm gates make the claim **not assessable**.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from src.report.cells import Cell, Test
from src.report.stats import LEVEL, CellModel, Estimate

PASSED = "passed"
FAILED = "failed"
UNSETTLED = "unsettled"
MISSING_ARM = "missing arm"
FIXED_BUDGET = "fixed budget"
WAIVED = "waived"
NOT_APPLICABLE = "not applicable"
BLOCKING = (FAILED, UNSETTLED, MISSING_ARM)
DEFAULT_MARGIN = 1.0
MOST_SEEDS = 200


@dataclass
class StabilityResult:
    """The gate's status for a claim, a line per test, and what would settle an unsettled gate."""

    status: str
    lines: list[str] = field(default_factory=list)
    epochs: int | None = None  # E, the claim's schedule
    seeds: int | None = None  # seeds per cell for an unsettled gate
    judged_on: list[Cell] = field(default_factory=list)  # the E/2 cells the gate's verdict read

    @property
    def blocks(self) -> bool:
        return self.status in BLOCKING

    @property
    def reason(self) -> str:
        """Why the verdict is blocked, for the verdict column."""
        half = f"{self.epochs // 2}" if self.epochs else "E/2"
        return {
            FAILED: f"contrast still moving between {half} and {self.epochs} epochs",
            UNSETTLED: f"contrast between {half} and {self.epochs} epochs not measured precisely enough",
            MISSING_ARM: f"no {half}-epoch arm to check the contrast's stability",
        }.get(self.status, "")


def fixed_budget(claim: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether the claim (or the whole study) states it is about its schedule exactly."""
    return str(claim.get("budget", report.get("budget", ""))).lower() == "fixed"


def margin_of(claim: dict[str, Any], test: Test, report: dict[str, Any]) -> float:
    """The claim's margin for the stability of ``test``'s contrast (see the module docstring)."""
    for key in ("within", "margin", "at_least", "at_most", "tolerance"):
        value = claim.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value != 0:
            return abs(float(value))
    if test.test in ("at_least", "at_most", "within") and test.bound != 0:
        return abs(float(test.bound))
    return float((report.get("stability") or {}).get("margin", DEFAULT_MARGIN))


def halved(weights: dict[Cell, float]) -> tuple[int | None, dict[Cell, float]]:
    """(E, the same design cells at E // 2 epochs); E None when the cells lack one common ``epochs``."""
    lengths = {cell.get("epochs") for cell in weights}
    if len(lengths) != 1 or None in lengths:
        return None, {}
    (text,) = lengths
    length = int(float(text))
    if length < 2:
        return length, {}
    half = {Cell.of({**dict(cell.values), "epochs": length // 2}): w for cell, w in weights.items()}
    return length, half


def check_stability(
    claim: dict[str, Any],
    tests: list[Test],
    model: CellModel,
    expand: Callable[[dict[Cell, float]], dict[Cell, float]],
    report: dict[str, Any],
    alpha: float,
) -> StabilityResult:
    """The gate for one claim: ``tests`` its tests, ``model`` the metric's cell model, ``expand`` maps a
    test's weights onto the model's design cells (:meth:`ClaimEvaluator.design_weights`)."""
    waived = str((claim.get("convergence") or {}).get("waived") or "")
    if waived:
        return StabilityResult(WAIVED, [f"not applied, as the claim states: {waived}"])
    expanded = [expand(t.weights) for t in tests]
    lengths = {halved(w)[0] for w in expanded}
    length = next(iter(lengths)) if len(lengths) == 1 else None
    if fixed_budget(claim, report):
        what = f"{length} epochs" if length else "its schedule"
        result = StabilityResult(FIXED_BUDGET, [f"a statement about {what} exactly: no stability gate"], length)
        if length is not None:
            moved = _measure(claim, tests, expanded, model, report, level=1 - alpha, length=length)
            if moved.status != MISSING_ARM:  # the half-length arm is there: show how far it moved, not gating
                result.lines += [f"{line} (shown, does not gate)" for line in moved.lines]
        return result
    if length is None:
        return StabilityResult(NOT_APPLICABLE, ["the claim's cells do not share one schedule length"])
    return _measure(claim, tests, expanded, model, report, level=1 - alpha, length=length)


def _measure(
    claim: dict[str, Any],
    tests: list[Test],
    expanded: list[dict[Cell, float]],
    model: CellModel,
    report: dict[str, Any],
    *,
    level: float,
    length: int,
) -> StabilityResult:
    """Δ = θ(E) − θ(E/2) for each test with its interval, judged against the claim's margin."""
    result = StabilityResult(PASSED, epochs=length)
    for test, weights in zip(tests, expanded, strict=True):
        _, half = halved(weights)
        if not half or any(cell not in model.means for cell in half):
            result.status = MISSING_ARM
            result.lines.append(f"{test.label}: no runs at {length // 2} epochs for every cell (run that arm)")
            continue
        result.judged_on += [cell for cell in half if cell not in result.judged_on]
        delta = model.welch_contrast({**weights, **{c: -w for c, w in half.items()}}, level)
        margin = margin_of(claim, test, report)
        status = judge(delta, margin)
        result.lines.append(
            f"{test.label}: θ({length}) − θ({length // 2}) = {delta.format()} against ±{margin:g}: {status}"
        )
        if status == UNSETTLED:
            spread = sum(w**2 * _variance(model, c) for c, w in {**weights, **half}.items())
            needed = seeds_for_half_width(spread, margin, level)
            result.seeds = max(result.seeds or 0, needed or MOST_SEEDS)
        result.status = _worse(result.status, status)
    return result


def judge(delta: Estimate, margin: float) -> str:
    """passed, failed or unsettled for one Δ (module docstring)."""
    if not delta.defined:
        return UNSETTLED
    if delta.low > margin or delta.high < -margin:
        return FAILED
    if abs(delta.value) <= margin and delta.half_width <= margin:
        return PASSED
    return UNSETTLED


def seeds_for_half_width(variance_sum: float, margin: float, level: float = LEVEL) -> int | None:
    """The smallest n with t(½ + level/2, df) · √(variance_sum / n) ≤ margin, df ≈ cells·(n − 1) taken as
    2(n − 1) (the fewest cells a Δ has, so the answer errs on the safe side)."""
    from scipy import stats

    for n in range(2, MOST_SEEDS + 1):
        if stats.t.ppf(0.5 + level / 2, 2 * (n - 1)) * math.sqrt(variance_sum / n) <= margin:
            return n
    return None


def _variance(model: CellModel, cell: Cell) -> float:
    value = model.cell_variances.get(cell, math.nan)
    return value if math.isfinite(value) else 0.0


def _worse(a: str, b: str) -> str:
    order = [PASSED, UNSETTLED, MISSING_ARM, FAILED]
    return max(a, b, key=order.index)
