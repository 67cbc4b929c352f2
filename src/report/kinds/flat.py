"""``flat`` (``norm``, ``batches``, ``within: δ``): the norm's error at every batch is within ±δ of its
error at the reference batch (the largest), each a TOST; the claim holds when every batch's does
(intersection-union) and fails when any one is shown outside ±δ after Holm's correction over the batches.

With batches 2, 8, 32 that is two tests, gn@2 − gn@32 and gn@8 − gn@32, each within ±δ: no batch gets
weight 0 (a least-squares slope over log2(batch) would give the middle batch none) and no max − min of
means is used (biased upward by noise). Without ``batches``: every batch the slice ran the norm at.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from src.report.cells import Test
from src.report.kinds.base import ClaimKind, Tests, register
from src.report.spec_checks import fail


@register("flat")
class Flat(ClaimKind):
    keys = frozenset({"norm", "batches", "within", "at_most", "reference"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        if not isinstance(claim.get("norm"), str):
            fail(f"{key}.norm", claim.get("norm"), "must name the norm whose error should be flat")
        if "within" not in claim and "at_most" not in claim:
            fail(f"{key}.within", None, "a flat claim needs within: δ > 0 (every batch within ±δ of the reference)")
        batches = claim.get("batches")
        if batches is not None and (not isinstance(batches, list) or not all(isinstance(b, int) for b in batches)):
            fail(f"{key}.batches", batches, "must be a list of integer batch sizes")
        reference = claim.get("reference")
        if reference is not None and (not isinstance(reference, int) or (batches and reference not in batches)):
            fail(f"{key}.reference", reference, "must be one of the claim's batches (default: the largest)")

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
        reference = int(claim.get("reference") or batches[-1])
        base = self.cell(claim, norm=norm, batch=reference)
        for batch in (b for b in batches if b != reference):
            tests.sizes.append(self.pair(self.cell(claim, norm=norm, batch=batch), base, "within", delta))
        tests.statement = "; ".join(f"{t.label} within ±{delta:g}" for t in tests.sizes)
        return tests
