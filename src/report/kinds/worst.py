"""``worst`` (``norm``, ``others``, ``margin``): the norm has the highest error of all, i.e. for every other
norm o the direction test on θ_o = m(norm) − m(o) > 0 (with ``margin: M``: the size test θ_o ≥ M). The
claim holds when every comparison does (intersection-union) and fails when any one is reversed after Holm's
correction over the comparisons. Without ``others``: every other norm the slice ran at the claim's cells.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from src.report.kinds.base import ClaimKind, Tests, register
from src.report.spec_checks import fail


@register("worst")
class Worst(ClaimKind):
    keys = frozenset({"norm", "others", "batch", "margin"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        if not isinstance(claim.get("norm"), str):
            fail(f"{key}.norm", claim.get("norm"), "must name the norm claimed to have the highest error")
        others = claim.get("others")
        if others is not None and (not isinstance(others, list) or not all(isinstance(o, str) for o in others)):
            fail(f"{key}.others", others, "must be a list of norm names")
        if others is not None and claim.get("norm") in others:
            fail(f"{key}.others", others, f"must not include the claim's own norm {claim.get('norm')!r}")

    def columns(self, claim: dict[str, Any]) -> list[str]:
        return [*super().columns(claim), *(["batch"] if "batch" in claim else [])]

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        norm = str(claim["norm"])
        at = {"batch": int(claim["batch"])} if "batch" in claim else {}
        others = list(claim.get("others") or sorted(set(runs["norm"].astype(str)) - {norm}))
        margin = float(claim.get("margin", 0.0))
        worst = self.cell(claim, norm=norm, **at)
        tests = Tests()
        for other in others:
            test, bound = ("at_least", margin) if margin else ("direction", 0.0)
            tests.sizes.append(self.pair(worst, self.cell(claim, norm=other, **at), test, bound))
        tests.statement = f"{worst} > " + ", ".join(str(self.cell(claim, norm=o, **at)) for o in others)
        if margin:
            tests.statement += f", each by ≥ {margin:g}"
        return tests
