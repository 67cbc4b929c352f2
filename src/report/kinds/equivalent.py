"""``equivalent`` (``within: δ``): |m(a) − m(b)| ≤ δ, an equivalence test (TOST)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from src.report.kinds.base import Tests, register
from src.report.kinds.pairs import PairKind
from src.report.spec_checks import fail


@register("equivalent")
class Equivalent(PairKind):
    keys = PairKind.keys | {"within"}

    def check(self, key: str, claim: dict[str, Any]) -> None:
        super().check(key, claim)
        if "within" not in claim:
            fail(f"{key}.within", None, "an equivalent claim needs within: δ > 0 (|a − b| ≤ δ)")

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        a, b = self.cells(claim)
        delta = float(claim["within"])
        return Tests(sizes=[self.pair(a, b, "within", delta)], statement=f"|{a} − {b}| ≤ {delta:g} (equivalence, TOST)")
