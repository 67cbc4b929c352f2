"""Claims a study makes, evaluated on its runs: the measured effect, its 95 % CI, and a verdict.

A study states its claims in its own file (``sweeps/<study>.yaml``) under the top-level key
``report.claims``, which training ignores and every run record carries in its resolved ``config``.
Each claim is a small mapping::

    - id: bn_small_batch                      # a short name
      claim: BN's error rises as the batch shrinks
      kind: difference                        # difference | less | greater | flat | order
      norm: bn                                # cells: norm + batches: [A, B], norms: [X, Y] + batch: N,
      batches: [2, 32]                        #        or a: {norm, batch} and b: {norm, batch}
      at_least: 2.0                           # error at 2 − error at 32 ≥ 2 points (or at_most: T)
      metric: test_error                      # any runs.csv column (default test_error)
      published: [{value: 11.1, source: GN paper Table 2}]

Kinds (``m(cell)`` is the metric's mean over the cell's runs, i.e. over seeds):

- ``difference``: effect = m(a) − m(b); claim effect ≥ ``at_least`` and/or ≤ ``at_most``.
- ``less``: m(a) < m(b); effect = m(b) − m(a) ≥ ``margin`` (default 0). ``greater``: m(a) > m(b).
- ``flat``: a norm's metric across ``batches`` (default: all it was run at) varies by at most
  ``at_most``; effect = the range of the means; every pairwise difference is tested against ±at_most.
- ``order``: at ``batch``, ``order: "bn ≲ gn < ln < in"``; each adjacent pair is a ``less`` claim,
  with ``≲`` (or ``<=``, ``≤``) allowing the left one to be worse by up to ``tolerance`` (default 0.5).

Verdicts (95 % t intervals, Welch's for differences, see :mod:`src.report.stats`):

- **reproduced**: the whole interval satisfies the claim (e.g. its lower end ≥ the threshold);
- **not reproduced**: the whole interval contradicts it (its upper end < the threshold);
- **inconclusive**: the interval straddles the threshold, or is undefined because a cell has a single
  run (one seed): a single seed never decides a claim, however large the point estimate;
- **no data**: a cell the claim needs has no completed run.

A claim made of several comparisons (``flat``, ``order``) is reproduced when all of them are, not
reproduced when any one is, and inconclusive otherwise. No correction for multiple comparisons.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import pandas as pd

from src.report.stats import Estimate, diff_ci

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NO_DATA = "no data"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NO_DATA)
KINDS = ("difference", "less", "greater", "flat", "order")
RELATIONS = {"<": "<", "≲": "≲", "<=": "≲", "≤": "≲"}


class ClaimError(ValueError):
    """A claim in a study file that cannot be understood."""


@dataclass(frozen=True)
class Cell:
    norm: str
    batch: int

    def __str__(self) -> str:
        return f"{self.norm}@{self.batch}"


@dataclass
class Comparison:
    """One tested difference: ``estimate`` of ``label`` against ``bound``."""

    label: str
    estimate: Estimate
    bound: str
    verdict: str


@dataclass
class ClaimResult:
    id: str
    text: str
    kind: str
    metric: str
    dataset: str
    model: str
    statement: str
    effect: str
    estimate: Estimate | None
    verdict: str
    published: list[dict[str, Any]]
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        est = self.estimate
        return {
            "id": self.id,
            "dataset": self.dataset,
            "model": self.model,
            "kind": self.kind,
            "metric": self.metric,
            "statement": self.statement,
            "effect": est.value if est else math.nan,
            "ci95_low": est.low if est else math.nan,
            "ci95_high": est.high if est else math.nan,
            "verdict": self.verdict,
            "published": "; ".join(format_published(p, signed=self.kind != "flat") for p in self.published),
        }


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ClaimError(f"{what} must be a number, got {value!r}") from error


def cells_of(spec: dict[str, Any]) -> tuple[Cell, Cell]:
    """The two cells a difference/less/greater claim compares."""
    if "a" in spec and "b" in spec:
        a, b = spec["a"], spec["b"]
        return Cell(str(a["norm"]), int(a["batch"])), Cell(str(b["norm"]), int(b["batch"]))
    if "norm" in spec and len(spec.get("batches") or []) == 2:
        first, second = spec["batches"]
        return Cell(str(spec["norm"]), int(first)), Cell(str(spec["norm"]), int(second))
    if "batch" in spec and len(spec.get("norms") or []) == 2:
        first, second = spec["norms"]
        return Cell(str(first), int(spec["batch"])), Cell(str(second), int(spec["batch"]))
    raise ClaimError("needs a and b, or norm with two batches, or two norms with a batch")


def parse_order(text: str) -> tuple[list[str], list[str]]:
    """``"bn ≲ gn < ln"`` → (["bn", "gn", "ln"], ["≲", "<"])."""
    parts = [p.strip() for p in re.split(r"(<=|≤|≲|<)", str(text))]
    norms, relations = parts[0::2], [RELATIONS[p] for p in parts[1::2]]
    if len(norms) < 2 or not all(norms):
        raise ClaimError(f"order {text!r} must look like 'bn ≲ gn < ln'")
    return norms, relations


def verdict_at_least(estimate: Estimate, bound: float) -> str:
    if not math.isfinite(estimate.value):
        return NO_DATA
    if not estimate.defined:
        return INCONCLUSIVE
    if estimate.low >= bound:
        return REPRODUCED
    if estimate.high < bound:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_at_most(estimate: Estimate, bound: float) -> str:
    if not math.isfinite(estimate.value):
        return NO_DATA
    if not estimate.defined:
        return INCONCLUSIVE
    if estimate.high <= bound:
        return REPRODUCED
    if estimate.low > bound:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_within(estimate: Estimate, bound: float) -> str:
    """|effect| ≤ bound: reproduced when the interval lies in [−bound, bound]."""
    if not math.isfinite(estimate.value):
        return NO_DATA
    if not estimate.defined:
        return INCONCLUSIVE
    if -bound <= estimate.low and estimate.high <= bound:
        return REPRODUCED
    if estimate.low > bound or estimate.high < -bound:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """All parts reproduced → reproduced; any not reproduced → not reproduced; any missing → no data."""
    if not verdicts or NO_DATA in verdicts:
        return NO_DATA
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


def point_agrees(estimate: Estimate, test: str, bound: float) -> bool | None:
    if not math.isfinite(estimate.value):
        return None
    if test == "at_least":
        return estimate.value >= bound
    if test == "at_most":
        return estimate.value <= bound
    return abs(estimate.value) <= bound


def format_published(item: Any, signed: bool = True) -> str:
    """A published number with its source: ``+11.1 (GN paper Table 2)``."""
    if not isinstance(item, dict):
        return str(item)
    value = item.get("value")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = (f"{value:+.1f}" if signed else f"{value:.1f}") if number else str(value)
    if value is None:
        text = "no number"
    source = item.get("source")
    return f"{text} ({source})" if source else text


class ClaimEvaluator:
    """Evaluates claims on one (dataset, model) slice of a study's runs."""

    def __init__(self, runs: pd.DataFrame, dataset: str, model: str):
        self.runs = runs
        self.dataset = dataset
        self.model = model

    def values(self, cell: Cell, metric: str) -> pd.Series:
        if metric not in self.runs.columns:
            return pd.Series(dtype=float)
        part = self.runs[(self.runs["norm"] == cell.norm) & (self.runs["batch"] == cell.batch)]
        return pd.to_numeric(part[metric], errors="coerce").dropna()

    def diff(self, a: Cell, b: Cell, metric: str) -> Estimate:
        return diff_ci(self.values(a, metric), self.values(b, metric))

    def evaluate(self, spec: dict[str, Any], index: int) -> ClaimResult:
        kind = str(spec.get("kind", "")).lower()
        metric = str(spec.get("metric", "test_error"))
        result = ClaimResult(
            id=str(spec.get("id", f"claim{index + 1}")),
            text=str(spec.get("claim", spec.get("text", ""))),
            kind=kind,
            metric=metric,
            dataset=self.dataset,
            model=self.model,
            statement="",
            effect="",
            estimate=None,
            verdict=NO_DATA,
            published=list(spec.get("published") or []),
        )
        if isinstance(spec.get("published"), dict):
            result.published = [spec["published"]]
        if spec.get("note"):
            result.notes.append(str(spec["note"]))
        try:
            if kind not in KINDS:
                raise ClaimError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
            getattr(self, f"_{kind}")(spec, metric, result)
        except (ClaimError, KeyError, TypeError, ValueError) as error:
            result.verdict = INCONCLUSIVE
            result.statement = result.statement or f"(claim not understood: {error})"
            result.notes.append(f"the claim could not be evaluated: {error}")
            return result
        self._explain(result, metric)
        return result

    def _explain(self, result: ClaimResult, metric: str) -> None:
        if metric not in self.runs.columns:
            result.notes.append(f"no run records {metric!r}")
        missing = [c.label for c in result.comparisons if not math.isfinite(c.estimate.value)]
        if missing:
            result.notes.append("missing runs for: " + ", ".join(missing))
        single = [c.label for c in result.comparisons if math.isfinite(c.estimate.value) and not c.estimate.defined]
        if single:
            result.notes.append(
                "a cell has a single run, so there is no confidence interval and no verdict"
                " (run more seeds, e.g. seed=0,1,2)"
            )

    def _single(self, result: ClaimResult, label: str, estimate: Estimate, test: str, bound: float) -> None:
        symbol = {"at_least": "≥", "at_most": "≤", "within": "within ±"}[test]
        verdict = {"at_least": verdict_at_least, "at_most": verdict_at_most, "within": verdict_within}[test](
            estimate, bound
        )
        result.comparisons.append(Comparison(label, estimate, f"{symbol} {bound:g}", verdict))
        if verdict == INCONCLUSIVE and not estimate.defined:
            agrees = point_agrees(estimate, test, bound)
            if agrees is not None:
                result.notes.append(
                    f"point estimate {label} = {estimate.value:+.2f} {'agrees with' if agrees else 'contradicts'}"
                    f" the claim ({symbol} {bound:g})"
                )

    def _difference(self, spec: dict[str, Any], metric: str, result: ClaimResult) -> None:
        a, b = cells_of(spec)
        label = f"{metric}({a}) − {metric}({b})"
        estimate = self.diff(a, b, metric)
        tests = [(t, _number(spec[t], t)) for t in ("at_least", "at_most") if spec.get(t) is not None]
        if not tests:
            raise ClaimError("a difference claim needs at_least or at_most")
        for test, bound in tests:
            self._single(result, label, estimate, test, bound)
        result.statement = " and ".join(f"{label} {'≥' if t == 'at_least' else '≤'} {b:g}" for t, b in tests)
        result.effect = label
        result.estimate = estimate
        result.verdict = combine([c.verdict for c in result.comparisons])

    def _less(self, spec: dict[str, Any], metric: str, result: ClaimResult, greater: bool = False) -> None:
        a, b = cells_of(spec)
        margin = _number(spec.get("margin", 0.0), "margin")
        high, low = (a, b) if greater else (b, a)
        label = f"{metric}({high}) − {metric}({low})"
        estimate = self.diff(high, low, metric)
        self._single(result, label, estimate, "at_least", margin)
        relation = ">" if greater else "<"
        result.statement = f"{metric}({a}) {relation} {metric}({b})" + (f" by ≥ {margin:g}" if margin else "")
        result.effect = label
        result.estimate = estimate
        result.verdict = result.comparisons[0].verdict

    def _greater(self, spec: dict[str, Any], metric: str, result: ClaimResult) -> None:
        self._less(spec, metric, result, greater=True)

    def _flat(self, spec: dict[str, Any], metric: str, result: ClaimResult) -> None:
        norm = str(spec["norm"])
        bound = _number(spec.get("at_most"), "at_most")
        batches = [int(b) for b in spec.get("batches") or []]
        if not batches:
            batches = sorted(int(b) for b in self.runs.loc[self.runs["norm"] == norm, "batch"].unique())
        if len(batches) < 2:
            raise ClaimError(f"a flat claim needs {norm} at two batch sizes or more")
        cells = [Cell(norm, b) for b in sorted(batches)]
        means = {c: self.values(c, metric).mean() for c in cells}
        for x, y in combinations(cells, 2):
            self._single(result, f"{metric}({x}) − {metric}({y})", self.diff(x, y, metric), "within", bound)
        result.statement = f"range of {metric}({norm}) over batches {', '.join(map(str, sorted(batches)))} ≤ {bound:g}"
        result.effect = f"max − min of the mean {metric} of {norm} over batches"
        finite = {c: m for c, m in means.items() if pd.notna(m)}
        if len(finite) == len(cells):
            top, bottom = max(finite, key=finite.get), min(finite, key=finite.get)
            result.estimate = self.diff(top, bottom, metric)
            result.effect += f" ({top} − {bottom})"
        else:
            result.estimate = Estimate(math.nan, math.nan, math.nan, (0,))
        result.verdict = combine([c.verdict for c in result.comparisons])

    def _order(self, spec: dict[str, Any], metric: str, result: ClaimResult) -> None:
        batch = int(spec["batch"])
        norms, relations = parse_order(spec["order"])
        tolerance = _number(spec.get("tolerance", 0.5), "tolerance")
        for left, relation, right in zip(norms, relations, norms[1:], strict=False):
            bound = -tolerance if relation == "≲" else 0.0
            a, b = Cell(left, batch), Cell(right, batch)
            self._single(result, f"{metric}({b}) − {metric}({a})", self.diff(b, a, metric), "at_least", bound)
        chain = [norms[0]] + [f"{relation} {norm}" for relation, norm in zip(relations, norms[1:], strict=True)]
        result.statement = f"at batch {batch}: {' '.join(chain)}"
        if "≲" in relations:
            result.statement += f" (≲: worse by at most {tolerance:g})"
        result.effect = "each adjacent pair: right − left"
        result.verdict = combine([c.verdict for c in result.comparisons])


def claims_of(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    claims = (spec or {}).get("claims") or []
    return [c for c in claims if isinstance(c, dict)]


def evaluate_claims(runs: pd.DataFrame, spec: dict[str, Any] | None) -> list[ClaimResult]:
    """Every claim of ``spec`` on every (dataset, model) in ``runs``."""
    results = []
    claims = claims_of(spec)
    if not claims or runs.empty:
        return results
    for (dataset, model), part in runs.groupby(["dataset", "model"], sort=True):
        evaluator = ClaimEvaluator(part, str(dataset), str(model))
        results += [evaluator.evaluate(claim, i) for i, claim in enumerate(claims)]
    return results
