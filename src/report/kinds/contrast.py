"""``contrast``: any weighted sum of cell means, θ = Σ wᵢ·m(cellᵢ), against ``at_least``/``at_most``/``within``.

For interactions such as "GN's gap to BN at batch 32 shrinks with the longer schedule"::

    kind: contrast
    where: {batch: 32}
    cells:                       # mappings column → value, each merged with where
      - {norm: gn, epochs: 24}
      - {norm: bn, epochs: 24}
      - {norm: gn, epochs: 12}
      - {norm: bn, epochs: 12}
    weights: [1, -1, -1, 1]      # one per cell, summing to 0: (gn − bn)@24 − (gn − bn)@12
    at_most: -1.0                # the gap shrinks by at least 1 point

Decided as ``difference`` is: ``at_least``/``at_most`` are size tests (with a direction test θ > 0 beside
``at_least`` > 0 alone, θ < 0 beside ``at_most`` < 0 alone), ``within: δ`` an equivalence test (TOST).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from src.report.cells import SYMBOL, Cell, Test
from src.report.kinds.base import ClaimKind, Tests, register
from src.report.spec_checks import cell, fail


def label(weights: dict[Cell, float]) -> str:
    """``(gn@32 epochs=24) − (bn@32 epochs=24) − 0.5·(…)``: the contrast as a signed sum of cells."""
    text = ""
    for i, (cell_, weight) in enumerate(weights.items()):
        name = f"({cell_})" if " " in str(cell_) else str(cell_)
        size = "" if abs(weight) == 1 else f"{abs(weight):g}·"
        sign = ("−" if weight < 0 else "") if i == 0 else (" − " if weight < 0 else " + ")
        text += f"{sign}{size}{name}"
    return text


@register("contrast")
class Contrast(ClaimKind):
    keys = frozenset({"cells", "weights", "at_least", "at_most", "within"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        cells, weights = claim.get("cells"), claim.get("weights")
        if not isinstance(cells, list) or len(cells) < 2:
            fail(f"{key}.cells", cells, "must be a list of two cells or more (mappings column → value)")
        for i, item in enumerate(cells):
            cell(f"{key}.cells[{i}]", item)
        if not isinstance(weights, list) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in weights
        ):
            fail(f"{key}.weights", weights, "must be a list of numbers, one per cell")
        if len(weights) != len(cells):
            fail(f"{key}.weights", weights, f"must be one number per cell ({len(cells)} cells, {len(weights)} weights)")
        if not any(weights):
            fail(f"{key}.weights", weights, "must not all be 0")
        total = math.fsum(weights)
        if abs(total) > 1e-9 * max(abs(w) for w in weights):
            fail(f"{key}.weights", weights, f"must sum to 0 (a contrast of cell means); they sum to {total:g}")
        if not {"at_least", "at_most", "within"} & set(claim):
            fail(f"{key}.at_least", None, "a contrast claim needs at_least and/or at_most, or within (a number)")
        if "within" in claim and {"at_least", "at_most"} & set(claim):
            fail(
                f"{key}.within",
                claim["within"],
                "a contrast is either bounded (at_least/at_most) or equivalent (within)",
            )

    def columns(self, claim: dict[str, Any]) -> list[str]:
        named = [*(claim.get("where") or {})]
        for item in claim.get("cells") or []:
            named += list(item) if isinstance(item, dict) else []
        return named

    def weights(self, claim: dict[str, Any]) -> dict[Cell, float]:
        """Cell → weight; a cell listed twice gets the sum of its weights."""
        weights: dict[Cell, float] = {}
        for item, weight in zip(claim["cells"], claim["weights"], strict=True):
            key = self.cell(claim, item)
            weights[key] = weights.get(key, 0.0) + float(weight)
        return weights

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        weights = self.weights(claim)
        theta = label(weights)
        tests, parts = Tests(), []
        if claim.get("within") is not None:
            delta = float(claim["within"])
            tests.sizes.append(Test(theta, "within", delta, weights))
            tests.statement = f"{theta} within ±{delta:g} (equivalence, TOST)"
            return tests
        for test in ("at_least", "at_most"):
            if claim.get(test) is not None:
                bound = float(claim[test])
                tests.sizes.append(Test(theta, test, bound, weights))
                parts.append(f"{theta} {SYMBOL[test]} {bound:g}")
        at_least, at_most = claim.get("at_least"), claim.get("at_most")
        if at_least is not None and float(at_least) > 0 and at_most is None:
            tests.direction = Test(theta, "direction", 0.0, weights)
        elif at_most is not None and float(at_most) < 0 and at_least is None:
            negated = {c: -w for c, w in weights.items()}
            tests.direction = Test(label(negated), "direction", 0.0, negated)
        tests.statement = " and ".join(parts)
        return tests
