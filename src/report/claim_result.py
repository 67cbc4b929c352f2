"""A claim's evaluation as the report shows it: its tests, verdict, gates and the row of claims.csv.

Verdict columns: ``direction_verdict`` (the direction test alone), ``size_verdict`` (the size tests
combined by :func:`decide_tests`: reproduced when all are, contradicted when any is after Holm's
correction across them) and ``verdict`` (the claim after its stability gate and Holm's correction across
the study's claims, :func:`src.report.claims.holm_across_claims`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from src.report.cells import NO_DATA, NOT_ASSESSABLE, NOT_REPRODUCED, REPRODUCED, REVERSED, UNDECIDED, Test
from src.report.gate import GateResult
from src.report.load import Skipped
from src.report.stability import FIXED_BUDGET, StabilityResult
from src.report.stats import MAX_SEEDS, NO_ESTIMATE, Estimate, holm

METRIC_NAMES = {
    "test_error": "test error (%) after the last epoch",
    "val_error": "validation error (%) after the last epoch",
    "best_val_error": "best validation error (%) over the epochs",
}


def metric_name(metric: str) -> str:
    """A metric's column name with what it measures, e.g. the median-of-last-k measurement."""
    found = re.fullmatch(r"val_error_median_last(\d+)", metric)
    if found:
        return f"{metric} (median validation error (%) of the last {found.group(1)} epochs, as the GN paper)"
    return f"{metric} ({METRIC_NAMES[metric]})" if metric in METRIC_NAMES else metric


def combine(verdicts: list[str]) -> str:
    """All reproduced → reproduced; any contradicted → not reproduced; any missing → no data."""
    if not verdicts or NO_DATA in verdicts:
        return NO_DATA
    if NOT_REPRODUCED in verdicts or REVERSED in verdicts:
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return UNDECIDED


def decide_tests(tests: list[Test], alpha: float) -> tuple[str, list[float]]:
    """The verdict of several tests of one claim, and their Holm-adjusted p-values against the claim.

    Reproduced when every test is (an intersection-union test: each at α/2, no correction needed); not
    reproduced when any one is contradicted after Holm's correction across the tests; no data when one
    lacks data; else undecided. One test: its own verdict."""
    verdicts = [t.verdict for t in tests]
    if len(tests) <= 1 or NO_DATA in verdicts:
        return combine(verdicts), [t.p_against for t in tests]
    adjusted = holm([t.p_against for t in tests])
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED, adjusted
    contradicted = any(math.isfinite(p) and p < alpha / 2 for p in adjusted)
    return (NOT_REPRODUCED if contradicted else UNDECIDED), adjusted


def format_published(item: Any) -> str:
    """A published number with its source and conditions: ``+11.1 (GN paper Table 2; ImageNet, …)``."""
    if not isinstance(item, dict):
        return str(item)
    value = item.get("value")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = f"{value:+.1f}" if number else ("no number" if value is None else str(value))
    details = "; ".join(str(item[k]) for k in ("source", "conditions") if item.get(k))
    return f"{text} ({details})" if details else text


@dataclass
class ClaimResult:
    id: str
    text: str
    kind: str
    metric: str
    dataset: str
    model: str
    statement: str = ""
    verdict: str = NO_DATA
    direction: Test | None = None
    sizes: list[Test] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gate: GateResult | None = None  # the per-cell level check: a diagnostic, shown, never gating
    stability: StabilityResult | None = None  # the contrast-stability gate
    size_verdict: str = ""
    p: float = math.nan  # the claim's p for "reproduced": the largest of its tests' (intersection-union)
    p_against: float = math.nan  # the smallest Holm-adjusted p against it
    p_study: float = math.nan  # p after Holm's correction across the study's claims
    model_df: int = 0
    model_cells: int = 0
    pooled_sd: float = math.nan
    not_counted: list[Skipped] = field(default_factory=list)
    holm_seeds: int | None = None  # undecided only by Holm across the study's claims: the seeds that decide it
    started_at: list[Any] = field(default_factory=list)  # of the runs the verdict rests on (pre-registration)

    @property
    def tests(self) -> list[Test]:
        return ([self.direction] if self.direction else []) + self.sizes

    @property
    def headline_tests(self) -> list[Test]:
        return self.sizes or ([self.direction] if self.direction else [])

    @property
    def estimate(self) -> Estimate | None:
        """The claim's headline contrast (its first size test, else its direction)."""
        first = self.sizes[0] if self.sizes else self.direction
        return first.estimate if first else None

    @property
    def budget(self) -> str:
        """``at 16 epochs (fixed budget)`` for a fixed-budget claim, else empty."""
        if self.stability and self.stability.status == FIXED_BUDGET:
            return f"at {self.stability.epochs} epochs (fixed budget)" if self.stability.epochs else "fixed budget"
        return ""

    @property
    def verdict_text(self) -> str:
        if self.verdict == NOT_ASSESSABLE and self.stability and self.stability.blocks:
            return f"{NOT_ASSESSABLE}: {self.stability.reason}"
        return self.verdict

    @property
    def verdict_shown(self) -> str:
        """The verdict with its budget, as every table shows it: ``reproduced at 16 epochs (fixed budget)``."""
        return f"{self.verdict_text} {self.budget}" if self.budget and self.verdict != NO_DATA else self.verdict_text

    @property
    def seeds(self) -> int | None:
        needed = [t.seeds for t in self.tests if t.verdict == UNDECIDED and t.seeds]
        if self.stability and self.stability.seeds:
            needed.append(self.stability.seeds)
        if self.holm_seeds:
            needed.append(self.holm_seeds)
        return max(needed) if needed else None

    def as_row(self) -> dict[str, Any]:
        est = self.estimate or NO_ESTIMATE
        direction = self.direction
        headline = self.sizes[0] if self.sizes else direction
        undecided = [t for t in self.tests if t.verdict == UNDECIDED]
        pooled = headline.pooled if headline and headline.pooled else NO_ESTIMATE
        return {
            "id": self.id,
            "dataset": self.dataset,
            "model": self.model,
            "kind": self.kind,
            "metric": self.metric,
            "statement": self.statement,
            "budget": self.budget,
            "effect": est.value,
            "ci_low": est.low,
            "ci_high": est.high,
            "ci_level": est.level,
            "df": est.df,
            "method": est.method,
            "pooled_low": pooled.low,
            "pooled_high": pooled.high,
            "pooled_df": self.model_df,
            "pooled_sd": self.pooled_sd,
            "direction_verdict": direction.verdict if direction else "",
            "size_verdict": self.size_verdict,
            "p": self.p,
            "p_holm_study": self.p_study,
            "verdict": self.verdict_text,
            "stability": self.stability.status if self.stability else "",
            "level_check": self.gate.status if self.gate else "",
            "seeds_per_cell_needed": (
                self.seeds if self.seeds else (f"> {MAX_SEEDS}" if undecided and self.verdict == UNDECIDED else "")
            ),
            "not_counted": len(self.not_counted),
            "published": "; ".join(format_published(p) for p in self.published),
        }
