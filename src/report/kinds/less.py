"""``less``: m(a) < m(b), the direction test on θ = m(b) − m(a); with ``margin: M`` also the size test
θ ≥ M, which is then the verdict."""

from __future__ import annotations

from typing import Any

import pandas as pd

from src.report.kinds.base import Tests, register
from src.report.kinds.pairs import PairKind


@register("less")
class Less(PairKind):
    keys = PairKind.keys | {"margin"}
    greater = False

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        a, b = self.cells(claim)
        high, low = (a, b) if self.greater else (b, a)
        tests = Tests(direction=self.pair(high, low, "direction", 0.0))
        margin = float(claim.get("margin", 0.0))
        if margin:
            tests.sizes.append(self.pair(high, low, "at_least", margin))
        tests.statement = f"{a} {'>' if self.greater else '<'} {b}" + (f" by ≥ {margin:g}" if margin else "")
        return tests
