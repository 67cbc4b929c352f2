"""Claims a study makes, evaluated on its runs: contrasts, intervals, tests, verdicts and what is missing.

A study states its claims in ``sweeps/<study>.yaml`` under ``report.claims`` (checked by
:mod:`src.report.spec`; training ignores the key and every run record carries it). ``m(cell)`` is the
mean of the metric (default ``test_error``) over a cell's runs; every contrast of cell means is
estimated from the cell-means linear model over *all* the cells of the study's (dataset, model) slice,
with the pooled within-cell variance and ``df = runs − cells`` (:class:`src.report.stats.CellModel`);
a per-pair Welch interval is kept as a robustness column.

Kinds, each a set of pre-specified tests (θ the contrast, α = ``report.alpha``, default 0.05), one module
each in :mod:`src.report.kinds` (which also loads a kind outside normlab named by dotted path):

- ``difference`` (cells a, b; ``at_least: T`` and/or ``at_most: T``): θ = m(a) − m(b). The **size**
  test is θ ≥ T (or ≤ T). When the claim has a direction (``at_least`` > 0, or ``at_most`` < 0) a
  **direction** test θ > 0 (θ < 0) is reported beside it: "BN's error rises" can be clearly above 0
  and clearly below the threshold. The claim's verdict is the size verdict.
- ``less`` / ``greater``: m(a) < m(b) (>): the direction test on θ = m(b) − m(a); with ``margin: M``
  also the size test θ ≥ M, which is then the verdict.
- ``equivalent`` (``within: δ``): |m(a) − m(b)| ≤ δ, an equivalence test (TOST).
- ``flat`` (``norm``, ``batches``, ``within: δ``, ``slope_within: s``): two pre-specified equivalence
  tests: m(norm@smallest) − m(norm@largest) within ±δ, and (three batches or more) the least-squares
  slope of the cell means against log2(batch) within ±s per doubling (default s = δ / log2(largest /
  smallest)). Never the max − min of means (biased upward by noise).
- ``order`` (``order: "bn ≲ gn < ln"``, ``tolerance``): each adjacent pair; ``<`` is a direction test
  (right − left > 0), ``≲`` an equivalence test |right − left| ≤ tolerance.
- ``contrast`` (``cells: [...]``, ``weights: [...]`` summing to 0; ``at_least``/``at_most`` or ``within``):
  θ = Σ wᵢ·m(cellᵢ), e.g. a difference of differences; bounds decided as for ``difference``.

Tests and verdicts, every one-sided test at level α/2 (so that each reads off the two-sided 1 − α
interval shown):

- direction: **reproduced** when θ is shown > 0, **reversed** when shown < 0, else **undecided**;
- size ``θ ≥ T``: **reproduced** when shown ≥ T, **not reproduced** when shown < T, else undecided;
- equivalence: **reproduced** when the TOST rejects both ``θ ≤ −δ`` and ``θ ≥ δ`` (the interval lies
  inside ±δ), **not reproduced** when θ is shown outside ±δ, else undecided.

A claim of several tests (``flat``, ``order``, ``difference`` with both bounds) is reproduced when all
are (an intersection-union test needs no multiplicity correction) and not reproduced when any one is
contradicted after Holm's correction across the claim's tests. A claim comparing two norms or more is
first put through the convergence gate (:mod:`src.report.gate`): failing it, the claim reads **not
assessable: <norm> undertrained**. For an undecided test the report gives the seeds per cell at which
the observed effect and pooled SD would decide it with 80 % power (``report.power``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from src.report.cells import (
    INCONCLUSIVE,
    NO_DATA,
    NOT_ASSESSABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    REVERSED,
    SYMBOL,
    UNDECIDED,
    VERDICTS,
    Cell,
    Test,
    as_text,
)
from src.report.gate import FAILED, GateResult, GateRule, check
from src.report.kinds import KINDS, find_kind, kind_name
from src.report.load import Skipped
from src.report.spec import check_spec
from src.report.stats import (
    ALPHA,
    MAX_SEEDS,
    NO_ESTIMATE,
    POWER,
    CellModel,
    Estimate,
    diff_ci,
    holm,
    p_greater,
    p_less,
    power_one_sided,
    power_tost,
    seeds_needed,
    tost,
)

METRIC_NAMES = {
    "test_error": "test error (%) after the last epoch",
    "val_error": "validation error (%) after the last epoch",
    "best_val_error": "best validation error (%) over the epochs",
}
__all__ = [  # the verdicts, cells and tests live in src.report.cells, the kinds in src.report.kinds
    "INCONCLUSIVE",
    "KINDS",
    "NOT_ASSESSABLE",
    "NOT_REPRODUCED",
    "NO_DATA",
    "REPRODUCED",
    "REVERSED",
    "SYMBOL",
    "UNDECIDED",
    "VERDICTS",
    "Cell",
    "ClaimEvaluator",
    "ClaimResult",
    "Test",
    "as_text",
    "evaluate_claims",
]


def metric_name(metric: str) -> str:
    """A metric's column name with what it measures, e.g. the median-of-last-k measurement."""
    found = re.fullmatch(r"val_error_median_last(\d+)", metric)
    if found:
        return f"{metric} (median validation error (%) of the last {found.group(1)} epochs, as the GN paper)"
    return f"{metric} ({METRIC_NAMES[metric]})" if metric in METRIC_NAMES else metric


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
    gate: GateResult | None = None
    model_df: int = 0
    model_cells: int = 0
    pooled_sd: float = math.nan
    not_counted: list[Skipped] = field(default_factory=list)

    @property
    def tests(self) -> list[Test]:
        return ([self.direction] if self.direction else []) + self.sizes

    @property
    def estimate(self) -> Estimate | None:
        """The claim's headline contrast (its first size test, else its direction)."""
        first = self.sizes[0] if self.sizes else self.direction
        return first.estimate if first else None

    @property
    def verdict_text(self) -> str:
        if self.verdict == NOT_ASSESSABLE and self.gate:
            return f"{NOT_ASSESSABLE}: {', '.join(self.gate.norms)} undertrained"
        return self.verdict

    @property
    def seeds(self) -> int | None:
        needed = [t.seeds for t in self.tests if t.verdict == UNDECIDED and t.seeds]
        return max(needed) if needed else None

    def as_row(self) -> dict[str, Any]:
        est = self.estimate or NO_ESTIMATE
        direction = self.direction
        headline = self.sizes[0] if self.sizes else direction
        undecided = [t for t in self.tests if t.verdict == UNDECIDED]
        return {
            "id": self.id,
            "dataset": self.dataset,
            "model": self.model,
            "kind": self.kind,
            "metric": self.metric,
            "statement": self.statement,
            "effect": est.value,
            "ci_low": est.low,
            "ci_high": est.high,
            "ci_level": est.level,
            "df": self.model_df,
            "pooled_sd": self.pooled_sd,
            "welch_low": headline.welch.low if headline and headline.welch else math.nan,
            "welch_high": headline.welch.high if headline and headline.welch else math.nan,
            "direction_verdict": direction.verdict if direction else "",
            "size_verdict": combine([t.verdict for t in self.sizes]) if self.sizes else "",
            "verdict": self.verdict_text,
            "gate": self.gate.status if self.gate else "",
            "seeds_per_cell_needed": (
                self.seeds if self.seeds else (f"> {MAX_SEEDS}" if undecided and self.verdict == UNDECIDED else "")
            ),
            "not_counted": len(self.not_counted),
            "published": "; ".join(format_published(p) for p in self.published),
        }


def combine(verdicts: list[str]) -> str:
    """All reproduced → reproduced; any contradicted → not reproduced; any missing → no data."""
    if not verdicts or NO_DATA in verdicts:
        return NO_DATA
    if NOT_REPRODUCED in verdicts or REVERSED in verdicts:
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return UNDECIDED


def format_published(item: Any) -> str:
    """A published number with its source and conditions: ``+11.1 (GN paper Table 2; ImageNet, …)``."""
    if not isinstance(item, dict):
        return str(item)
    value = item.get("value")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = f"{value:+.1f}" if number else ("no number" if value is None else str(value))
    details = "; ".join(str(item[k]) for k in ("source", "conditions") if item.get(k))
    return f"{text} ({details})" if details else text


class ClaimEvaluator:
    """Evaluates claims on one (dataset, model) slice of a study's runs."""

    def __init__(
        self,
        runs: pd.DataFrame,
        dataset: str,
        model: str,
        spec: dict[str, Any],
        curves: dict[str, pd.DataFrame] | None = None,
        skipped: list[Skipped] | None = None,
    ):
        self.runs = runs
        self.dataset = dataset
        self.model = model
        self.alpha = float(spec.get("alpha", ALPHA))
        self.power = float(spec.get("power", POWER))
        self.convergence = spec.get("convergence") or {}
        self.curves = curves or {}
        self.skipped = skipped or []
        self.models: dict[str, CellModel] = {}
        named = {column for claim in claims_of(spec) for column in named_columns(claim)}
        self.design = [c for c in dict.fromkeys([*DESIGN, *sorted(named)]) if c in runs]

    def cell_model(self, metric: str) -> CellModel:
        """The cell-means model of ``metric`` over every design cell of this slice: the runs grouped by
        dataset, model, norm, batch, epochs and every other column a claim of the study names."""
        if metric not in self.models:
            cells: dict[Cell, list[float]] = {}
            if metric in self.runs and self.design:
                values = pd.to_numeric(self.runs[metric], errors="coerce")
                groups = [self.runs[c].map(as_text) if c != "batch" else self.runs[c] for c in self.design]
                for group, part in values.groupby(groups):
                    group = group if isinstance(group, tuple) else (group,)
                    cells[Cell.of(dict(zip(self.design, group, strict=True)))] = list(part.dropna())
            self.models[metric] = CellModel(cells)
        return self.models[metric]

    def design_weights(self, weights: dict[Cell, float], metric: str) -> dict[Cell, float]:
        """A claim's contrast over design cells: m(claim cell) is the mean of the means of the design
        cells it matches, so each of them gets its weight ÷ their number (none match: no data)."""
        model = self.cell_model(metric)
        expanded: dict[Cell, float] = {}
        for cell, weight in weights.items():
            matching = [d for d in model.values if cell.within(d)]
            if not matching:
                return {cell: weight for cell, weight in weights.items()}  # keys the model lacks: no estimate
            for design in matching:
                expanded[design] = expanded.get(design, 0.0) + weight / len(matching)
        return expanded

    def values(self, cell: Cell, metric: str) -> list[float]:
        model = self.cell_model(metric)
        return [v for design, values in model.values.items() if cell.within(design) for v in values]

    # ------------------------------------------------------------------ one test

    def run_test(self, test: Test, metric: str) -> Test:
        """Estimate, p-values, verdict, Welch robustness and the seeds a decision would take."""
        model = self.cell_model(metric)
        level = 1 - self.alpha
        test.estimate = model.contrast(self.design_weights(test.weights, metric), level)
        pair = [c for c, w in test.weights.items() if w != 0]
        if len(pair) == 2 and sorted(test.weights[c] for c in pair) == [-1.0, 1.0]:
            a = next(c for c in pair if test.weights[c] > 0)
            b = next(c for c in pair if test.weights[c] < 0)
            test.welch = diff_ci(self.values(a, metric), self.values(b, metric), level)
        test.p, test.p_against, test.verdict = self.judge(test, test.estimate)
        if test.welch is not None:
            test.welch_verdict = self.judge(test, test.welch)[2]
        if test.verdict == UNDECIDED:
            self.size_up(test, model, metric)
        return test

    def judge(self, test: Test, estimate: Estimate) -> tuple[float, float, str]:
        """(p for the claim, p against it, verdict), each one-sided test at α/2."""
        if not math.isfinite(estimate.value):
            return math.nan, math.nan, NO_DATA
        if test.test in ("direction", "at_least"):
            p, against = p_greater(estimate, test.bound), p_less(estimate, test.bound)
        elif test.test == "at_most":
            p, against = p_less(estimate, test.bound), p_greater(estimate, test.bound)
        else:
            p = tost(estimate, -test.bound, test.bound)
            against = min(p_greater(estimate, test.bound), p_less(estimate, -test.bound))
        level = self.alpha / 2
        if not math.isfinite(p):
            return p, against, UNDECIDED
        if p < level:
            return p, against, REPRODUCED
        if against < level:
            return p, against, REVERSED if test.test == "direction" else NOT_REPRODUCED
        return p, against, UNDECIDED

    def size_up(self, test: Test, model: CellModel, metric: str) -> None:
        """Seeds per cell at which the observed effect and pooled SD decide ``test`` with ``self.power``."""
        sd, value = model.sd, test.estimate.value
        if not (math.isfinite(sd) and sd > 0):
            test.seeds_note = "no pooled SD: every cell has one run (run ≥ 2 seeds per cell)"
            return
        factor = sum(w**2 for w in self.design_weights(test.weights, metric).values())
        cells, level = len(model.values), self.alpha / 2
        if test.test == "within" and abs(value) < test.bound:
            power = lambda n: power_tost(value, test.bound, sd, factor, n, cells, level)  # noqa: E731
        else:
            edge = test.bound if test.test != "within" else test.bound * (1 if value > 0 else -1)
            shift = abs(value - edge)
            if shift == 0:
                test.seeds_note = "the estimate sits on the bound: no number of seeds decides it at this effect"
                return
            power = lambda n: power_one_sided(shift, sd, factor, n, cells, level)  # noqa: E731
        test.seeds = seeds_needed(power, self.power)
        if test.seeds is None:
            test.seeds_note = f"more than {MAX_SEEDS} seeds per cell at this effect"

    # ------------------------------------------------------------------ claims

    def evaluate(self, spec: dict[str, Any], index: int) -> ClaimResult:
        kind = kind_name(spec)
        metric = str(spec.get("metric", "test_error"))
        published = spec.get("published") or []
        result = ClaimResult(
            id=str(spec.get("id", f"claim{index + 1}")),
            text=str(spec.get("claim", spec.get("text", ""))),
            kind=kind,
            metric=metric,
            dataset=self.dataset,
            model=self.model,
            published=[published] if isinstance(published, dict) else list(published),
        )
        if spec.get("note"):
            result.notes.append(str(spec["note"]))
        tests = find_kind(spec).build(spec, self.runs)
        result.direction, result.sizes, result.statement = tests.direction, tests.sizes, tests.statement
        result.notes += tests.notes
        model = self.cell_model(metric)
        result.model_df, result.model_cells, result.pooled_sd = model.df, len(model.values), model.sd
        for test in result.tests:
            self.run_test(test, metric)
        self.decide(result, spec)
        self.explain(result, metric)
        return result

    def decide(self, result: ClaimResult, spec: dict[str, Any]) -> None:
        sizes = result.sizes or ([result.direction] if result.direction else [])
        verdicts = [t.verdict for t in sizes]
        if len(sizes) > 1 and NO_DATA not in verdicts:
            adjusted = holm([t.p_against for t in sizes])
            contradicted = any(math.isfinite(p) and p < self.alpha / 2 for p in adjusted)
            if all(v == REPRODUCED for v in verdicts):
                result.verdict = REPRODUCED
            else:
                result.verdict = NOT_REPRODUCED if contradicted else UNDECIDED
            result.notes.append(
                f"{len(sizes)} tests: reproduced only if all are; contradicted if any is after Holm's correction"
                " across them (adjusted p against the claim: "
                + ", ".join(f"{t.label} {p:.3g}" for t, p in zip(sizes, adjusted, strict=True))
                + ")"
            )
        else:
            result.verdict = combine(verdicts)
        cells = sorted({c for t in result.tests for c, w in t.weights.items() if w != 0}, key=str)
        rule = GateRule.of(self.convergence, spec.get("convergence"))
        if result.metric in self.runs and "train_loss" in self.runs:
            result.gate = check(cells, self.runs, self.curves, rule)
            if result.gate.status == FAILED and result.verdict != NO_DATA:
                result.verdict = NOT_ASSESSABLE
        wanted = {str(c) for c in cells}
        result.not_counted = [s for s in self.skipped if s.cell in wanted and s.status != "completed"]

    def explain(self, result: ClaimResult, metric: str) -> None:
        if metric not in self.runs.columns:
            result.notes.append(f"no run records {metric!r}")
        missing = sorted({str(c) for t in result.tests for c in t.weights if not self.values(c, metric)})
        if missing:
            result.notes.append("missing runs for: " + ", ".join(missing))
        if result.model_df == 0 and any(math.isfinite(t.estimate.value) for t in result.tests):
            result.notes.append(
                "every cell has a single run, so there is no pooled SD, no interval and no verdict"
                " (run more seeds, e.g. seed=0,1,2)"
            )
            for test in result.tests:
                if math.isfinite(test.estimate.value):
                    agrees = self.point_agrees(test)
                    result.notes.append(
                        f"point estimate {test.label} = {test.estimate.value:+.2f}"
                        f" {'agrees with' if agrees else 'contradicts'} the claim ({test.claim})"
                    )
        differ = [t for t in result.tests if t.welch_verdict and t.verdict != NO_DATA and t.welch_verdict != t.verdict]
        for label in dict.fromkeys(t.label for t in differ):
            tests = [t for t in differ if t.label == label]
            readings = ", ".join(f"{t.claim}: Welch {t.welch_verdict}, pooled {t.verdict}" for t in tests)
            result.notes.append(
                f"robustness: {label} with its own two cells' variances (Welch, {tests[0].welch.format()}) reads"
                f" differently ({readings}): these cells' spread differs from the pooled SD"
            )
        if result.not_counted:
            counts = Counter(f"{s.status} in {s.cell}" for s in result.not_counted)
            listed = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
            result.notes.append(
                f"runs of this claim's cells not in the means: {listed}. The estimate covers the runs that"
                " finished; a norm that diverges at a setting fails there"
            )

    @staticmethod
    def point_agrees(test: Test) -> bool:
        value = test.estimate.value
        if test.test in ("direction", "at_least"):
            return value > test.bound if test.test == "direction" else value >= test.bound
        if test.test == "at_most":
            return value <= test.bound
        return abs(value) <= test.bound


SLICE_COLUMNS = {"dataset", "model"}
DESIGN = ("dataset", "model", "norm", "batch", "epochs")
ALL = "(all)"


def claims_of(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The study's claims, each with ``report.where`` under its own ``where`` (the claim's values win): a
    study that extends another judges the inherited claims on its main arm, e.g. ``where: {epochs: 16}``
    while a shorter schedule serves the convergence gate."""
    spec = spec or {}
    shared = spec.get("where") or {}
    claims = [c for c in spec.get("claims") or [] if isinstance(c, dict)]
    return [{**c, "where": {**shared, **(c.get("where") or {})}} for c in claims] if shared else claims


def evaluate_claims(
    runs: pd.DataFrame,
    spec: dict[str, Any] | None,
    curves: dict[str, pd.DataFrame] | None = None,
    skipped: list[Skipped] | None = None,
) -> list[ClaimResult]:
    """Every claim of ``spec`` on every (dataset, model) in ``runs``; a bad spec raises SpecError."""
    check_spec(spec)
    claims = claims_of(spec)
    if not claims or runs.empty:
        return []
    results: list[ClaimResult] = []
    # a claim whose cells name the dataset or the model compares across slices: it sees every run
    across = [i for i, claim in enumerate(claims) if SLICE_COLUMNS & set(named_columns(claim))]
    for (dataset, model), part in runs.groupby(["dataset", "model"], sort=True):
        evaluator = ClaimEvaluator(part, str(dataset), str(model), spec or {}, curves, skipped)
        results += [evaluator.evaluate(claim, i) for i, claim in enumerate(claims) if i not in across]
    if across:
        everything = ClaimEvaluator(runs, ALL, ALL, spec or {}, curves, skipped)
        results += [everything.evaluate(claims[i], i) for i in across]
    return results


def named_columns(claim: dict[str, Any]) -> list[str]:
    """The columns a claim's cells name (its kind says which)."""
    return find_kind(claim).columns(claim)
