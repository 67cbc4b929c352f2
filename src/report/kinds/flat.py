"""``flat`` (``norm``, ``batches``, ``within: δ``, ``slope_within: s``): two pre-specified equivalence tests.

m(norm@smallest) − m(norm@largest) within ±δ, and (three batches or more) the least-squares slope of the
cell means against log2(batch) within ±s per doubling (default s = δ / log2(largest / smallest)). Never
the max − min of means (biased upward by noise). Without ``batches``: every batch the slice ran the norm at.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from src.report.cells import Test
from src.report.checks import fail
from src.report.kinds.base import ClaimKind, Tests, register
from src.report.stats import slope_weights


@register("flat")
class Flat(ClaimKind):
    keys = frozenset({"norm", "batches", "within", "at_most", "slope_within"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        if not isinstance(claim.get("norm"), str):
            fail(f"{key}.norm", claim.get("norm"), "must name the norm whose error should be flat")
        if "within" not in claim and "at_most" not in claim:
            fail(f"{key}.within", None, "a flat claim needs within: δ > 0 (small batch − large batch within ±δ)")
        batches = claim.get("batches")
        if batches is not None and (not isinstance(batches, list) or not all(isinstance(b, int) for b in batches)):
            fail(f"{key}.batches", batches, "must be a list of integer batch sizes")

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        norm = str(claim["norm"])
        delta = float(claim.get("within", claim.get("at_most")))
        batches = sorted({int(b) for b in claim.get("batches") or []})
        if not batches:
            batches = sorted(int(b) for b in runs.loc[runs["norm"] == norm, "batch"].unique())
        tests = Tests()
        if len(batches) < 2:
            tests.statement = f"{norm} flat: needs {norm} at two batch sizes or more"
            tests.notes.append(f"{norm} was run at {len(batches)} batch size(s)")
            tests.sizes.append(Test(f"{norm}: no two batches", "within", delta, {}))
            return tests
        small, large = self.cell(claim, norm=norm, batch=batches[0]), self.cell(claim, norm=norm, batch=batches[-1])
        tests.sizes.append(self.pair(small, large, "within", delta))
        tests.statement = f"{small} − {large} within ±{delta:g}"
        if len(batches) >= 3:
            default = delta / math.log2(batches[-1] / batches[0])
            slope = float(claim.get("slope_within", default))
            weights = slope_weights([math.log2(b) for b in batches])
            cells = [self.cell(claim, norm=norm, batch=b) for b in batches]
            label = f"slope of {norm} vs log2(batch) over {', '.join(map(str, batches))} (per doubling)"
            tests.sizes.append(Test(label, "within", slope, dict(zip(cells, weights, strict=True))))
            tests.statement += f"; slope within ±{slope:g} per doubling"
            if "slope_within" not in claim:
                tests.notes.append(f"slope bound ±{slope:.3g} per doubling = ±{delta:g} spread over the batch range")
        return tests
