"""Claims a study makes, evaluated on its runs: contrasts, intervals, tests, verdicts and what is missing.

A study states its claims in ``conf/experiment/<study>.yaml`` under ``report.claims`` (checked by
:mod:`src.report.spec`; training ignores the key and every run record carries it). ``m(cell)`` is the
mean of the metric (default ``test_error``) over a cell's runs. Every contrast of cell means is estimated
with **each cell's own variance** and Welch–Satterthwaite df (:meth:`src.report.stats.CellModel.welch_contrast`):
the cells of one study differ in spread (a short schedule's seeds scatter more). The pooled-variance
cell-means model over the slice is kept as a robustness column.

Kinds, each a set of pre-specified tests (θ the contrast, α = ``report.alpha``, default 0.05), one module
each in :mod:`src.report.kinds` (which also loads a kind outside normlab named by dotted path):

- ``difference`` (cells a, b; ``at_least: T`` and/or ``at_most: T``): θ = m(a) − m(b). The **size**
  test is θ ≥ T (or ≤ T), and a **direction** test θ > 0 (θ < 0) is reported beside it.
- ``less`` / ``greater``: m(a) < m(b) (>): the direction test on θ = m(b) − m(a); with ``margin: M``
  also the size test θ ≥ M, which is then the verdict.
- ``equivalent`` (``within: δ``): |m(a) − m(b)| ≤ δ, an equivalence test (TOST).
- ``flat`` (``norm``, ``batches``, ``within: δ``): a TOST of every batch against the largest one.
- ``worst`` (``norm``, ``others``): m(norm) > m(other) for every other norm.
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

Multiplicity: a claim of several tests (``flat``, ``worst``, ``order``, ``difference`` with both bounds)
is reproduced when all are (intersection-union) and not reproduced when any one is contradicted after
Holm's correction across its tests (:func:`src.report.claim_result.decide_tests`, the same rule for the
``size_verdict`` column and the verdict); then the study's claims are a family, and a verdict must
survive Holm's correction across them (:func:`holm_across_claims`).

Gates: every claim goes through the contrast-stability gate (:mod:`src.report.stability`): its contrast at
E epochs and at E/2 must agree within the claim's margin, else **not assessable** (still moving, not
measured precisely enough, or the E/2 arm missing); a ``budget: fixed`` claim is about E epochs exactly
and says so. The per-cell level check of :mod:`src.report.gate` is shown as a diagnostic. For an undecided
test the report gives the seeds per cell at which the observed effect and the cells' SDs would decide it
with 80 % power (``report.power``).
"""

from __future__ import annotations

import math
from collections import Counter
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
from src.report.claim_result import ClaimResult, combine, decide_tests, format_published, metric_name
from src.report.gate import GateRule, check
from src.report.kinds import KINDS, find_kind, kind_name
from src.report.load import Skipped
from src.report.spec import check_spec
from src.report.stability import check_stability
from src.report.stats import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    CellModel,
    Estimate,
    holm,
    p_greater,
    p_less,
    power_one_sided,
    power_tost,
    seeds_needed,
    tost,
)

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
    "combine",
    "evaluate_claims",
    "format_published",
    "metric_name",
]


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
        self.spec = spec
        self.alpha = float(spec.get("alpha", ALPHA))
        self.power = float(spec.get("power", POWER))
        self.convergence = spec.get("convergence") or {}
        self.curves = curves or {}
        self.skipped = skipped or []
        self.models: dict[str, CellModel] = {}
        # every claim of the study: at least Holm's family in holm_across_claims (which leaves out gated ones)
        self.claim_count = len(claims_of(spec))
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
        """Estimate (per-cell variances), p-values, verdict, the pooled reading and the seeds to decide."""
        model = self.cell_model(metric)
        level = 1 - self.alpha
        weights = self.design_weights(test.weights, metric)
        test.estimate = model.welch_contrast(weights, level)
        test.pooled = model.contrast(weights, level)
        test.p, test.p_against, test.verdict = self.judge(test, test.estimate)
        test.pooled_verdict = self.judge(test, test.pooled)[2]
        if test.verdict == UNDECIDED:
            test.seeds, test.seeds_note = self.size_up(test, model, metric)
        elif test.verdict == REPRODUCED and self.claim_count > 1:
            test.seeds_if_corrected = self.size_up(test, model, metric, self.alpha / 2 / self.claim_count)[0]
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

    def size_up(self, test: Test, model: CellModel, metric: str, level: float | None = None) -> tuple[int | None, str]:
        """Seeds per cell at which the observed effect decides ``test`` with ``self.power`` at ``level`` (each
        one-sided test's, α/2, by default), each cell with its own SD: se(n) = √(Σ c_i² s_i² / n) =
        σ_c·√(Σ c_i² / n) with σ_c² = Σ c_i² s_i² / Σ c_i², and df = cells·(n − 1) for the cells of the
        contrast (Welch–Satterthwaite's df is at most that); with a note where no number does."""
        weights = self.design_weights(test.weights, metric)
        variances = model.cell_variances
        factor = sum(w**2 for w in weights.values())
        spread = [w**2 * variances.get(c, math.nan) for c, w in weights.items()]
        sd = math.sqrt(sum(spread) / factor) if factor and all(math.isfinite(v) for v in spread) else math.nan
        value = test.estimate.value
        if not (math.isfinite(sd) and sd > 0):
            return None, "a cell has one run, so no SD: run ≥ 2 seeds per cell"
        cells, level = len(weights), self.alpha / 2 if level is None else level
        if test.test == "within" and abs(value) < test.bound:
            power = lambda n: power_tost(value, test.bound, sd, factor, n, cells, level)  # noqa: E731
        else:
            edge = test.bound if test.test != "within" else test.bound * (1 if value > 0 else -1)
            shift = abs(value - edge)
            if shift == 0:
                return None, "the estimate sits on the bound: no number of seeds decides it at this effect"
            power = lambda n: power_one_sided(shift, sd, factor, n, cells, level)  # noqa: E731
        seeds = seeds_needed(power, self.power)
        return seeds, "" if seeds is not None else f"more than {MAX_SEEDS} seeds per cell at this effect"

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
        """The size verdict (Holm across the claim's tests), the contrast-stability gate, and the
        per-cell level check shown as a diagnostic."""
        sizes = result.headline_tests
        result.size_verdict, adjusted = decide_tests(sizes, self.alpha)
        result.verdict = result.size_verdict
        result.p = max((t.p for t in sizes), default=math.nan)
        finite = [p for p in adjusted if math.isfinite(p)]
        result.p_against = min(finite) if finite else math.nan
        if len(sizes) > 1 and result.verdict != NO_DATA:
            result.notes.append(
                f"{len(sizes)} tests: reproduced only if all are; contradicted if any is after Holm's correction"
                " across them (adjusted p against the claim: "
                + ", ".join(f"{t.label} {p:.3g}" for t, p in zip(sizes, adjusted, strict=True))
                + ")"
            )
        metric_model = self.cell_model(result.metric)
        result.stability = check_stability(
            spec,
            sizes,
            metric_model,
            lambda weights: self.design_weights(weights, result.metric),
            self.spec,
            self.alpha,
        )
        if result.stability.blocks and result.verdict != NO_DATA:
            result.verdict = NOT_ASSESSABLE
        cells = sorted({c for t in result.tests for c, w in t.weights.items() if w != 0}, key=str)
        result.started_at = self.started_at(cells, result)
        rule = GateRule.of(self.convergence, spec.get("convergence"))
        if result.metric in self.runs and "train_loss" in self.runs:
            result.gate = check(cells, self.runs, self.curves, rule)
        wanted = {str(c) for c in cells}
        result.not_counted = [s for s in self.skipped if s.cell in wanted and s.status != "completed"]

    def started_at(self, cells: list[Cell], result: ClaimResult) -> list[Any]:
        """The ``started_at`` of the runs the verdict rests on: the claim's cells, and the half-length arm
        its stability gate read (not the arm a fixed-budget claim only shows)."""
        if "started_at" not in self.runs:
            return []
        judged = list(cells) + (result.stability.judged_on if result.stability else [])
        mask = pd.Series(False, index=self.runs.index)
        for cell in judged:
            mask |= cell.mask(self.runs)
        return list(self.runs.loc[mask, "started_at"])

    def explain(self, result: ClaimResult, metric: str) -> None:
        if metric not in self.runs.columns:
            result.notes.append(f"no run records {metric!r}")
        missing = sorted({str(c) for t in result.tests for c in t.weights if not self.values(c, metric)})
        if missing:
            result.notes.append("missing runs for: " + ", ".join(missing))
        if result.model_df == 0 and any(math.isfinite(t.estimate.value) for t in result.tests):
            result.notes.append(
                "every cell has a single run, so there is no SD, no interval and no verdict"
                " (run more seeds, e.g. seed=0,1,2)"
            )
            for test in result.tests:
                if math.isfinite(test.estimate.value):
                    agrees = self.point_agrees(test)
                    result.notes.append(
                        f"point estimate {test.label} = {test.estimate.value:+.2f}"
                        f" {'agrees with' if agrees else 'contradicts'} the claim ({test.claim})"
                    )
        differ = [
            t for t in result.tests if t.pooled_verdict and t.verdict != NO_DATA and t.pooled_verdict != t.verdict
        ]
        for label in dict.fromkeys(t.label for t in differ):
            tests = [t for t in differ if t.label == label]
            readings = ", ".join(f"{t.claim}: pooled {t.pooled_verdict}, per-cell {t.verdict}" for t in tests)
            result.notes.append(
                f"robustness: {label} with one pooled variance over all cells ({tests[0].pooled.format()}) reads"
                f" differently ({readings}): these cells' spread differs from the study's"
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
    holm_across_claims(results, float((spec or {}).get("alpha", ALPHA)))
    return results


def holm_across_claims(results: list[ClaimResult], alpha: float) -> None:
    """Holm's correction across a study's claims (the family: every claim with a p-value, per slice).

    A claim's p for "reproduced" is its largest test p (intersection-union); after Holm across the
    family it must stay below α/2 for the claim to read reproduced, else it reads undecided with a note.
    Likewise a "not reproduced" must survive Holm on the claims' p-values against them. A claim blocked by
    its gate or without data keeps its verdict and does not count towards the family."""
    groups: dict[tuple[str, str], list[ClaimResult]] = {}
    for result in results:
        groups.setdefault((result.dataset, result.model), []).append(result)
    for group in groups.values():
        family = [r for r in group if r.verdict in (REPRODUCED, NOT_REPRODUCED, UNDECIDED) and math.isfinite(r.p)]
        if len(family) < 2:
            for r in family:
                r.p_study = r.p
            continue
        for_claim = holm([r.p for r in family])
        against = holm([r.p_against for r in family])
        for result, p, p_against in zip(family, for_claim, against, strict=True):
            result.p_study = p
            level = alpha / 2
            if result.verdict == REPRODUCED and not p < level:
                result.verdict = UNDECIDED
                needed = [t.seeds_if_corrected for t in result.tests if t.seeds_if_corrected]
                result.holm_seeds = max(needed) if needed else None
                result.notes.append(
                    f"reproduced on its own (p = {result.p:.3g}) but not after Holm's correction across the"
                    f" study's {len(family)} claims (adjusted p = {p:.3g} ≥ {level:g})"
                    + (f"; about {result.holm_seeds} seeds per cell would decide it" if result.holm_seeds else "")
                )
            elif result.verdict == NOT_REPRODUCED and math.isfinite(p_against) and not p_against < level:
                result.verdict = UNDECIDED
                result.notes.append(
                    f"contradicted on its own but not after Holm's correction across the study's {len(family)}"
                    f" claims (adjusted p against it = {p_against:.3g} ≥ {level:g})"
                )


def named_columns(claim: dict[str, Any]) -> list[str]:
    """The columns a claim's cells name (its kind says which)."""
    return find_kind(claim).columns(claim)
