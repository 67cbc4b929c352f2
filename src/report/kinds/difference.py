"""``difference``: θ = m(a) − m(b) ≥ ``at_least`` and/or ≤ ``at_most``.

The size tests are the verdict. When the claim has a direction (``at_least`` > 0 alone, or ``at_most`` < 0
alone) a direction test θ > 0 (θ < 0) is reported beside them: "BN's error rises" can be clearly above 0
and clearly below the threshold.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from src.report.cells import SYMBOL
from src.report.kinds.base import Tests, register
from src.report.kinds.pairs import PairKind
from src.report.spec_checks import fail


@register("difference")
class Difference(PairKind):
    keys = PairKind.keys | {"at_least", "at_most"}

    def check(self, key: str, claim: dict[str, Any]) -> None:
        super().check(key, claim)
        if "at_least" not in claim and "at_most" not in claim:
            fail(f"{key}.at_least", None, "a difference claim needs at_least and/or at_most (a number)")

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        a, b = self.cells(claim)
        tests, parts = Tests(), []
        for test in ("at_least", "at_most"):
            if claim.get(test) is not None:
                bound = float(claim[test])
                tests.sizes.append(self.pair(a, b, test, bound))
                parts.append(f"{a} − {b} {SYMBOL[test]} {bound:g}")
        at_least, at_most = claim.get("at_least"), claim.get("at_most")
        if at_least is not None and float(at_least) > 0 and at_most is None:
            tests.direction = self.pair(a, b, "direction", 0.0)
        elif at_most is not None and float(at_most) < 0 and at_least is None:
            tests.direction = self.pair(b, a, "direction", 0.0)
        tests.statement = " and ".join(parts)
        return tests
