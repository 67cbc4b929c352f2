"""``order`` (``order: "bn ≲ gn < ln"``, ``batch``, ``tolerance``): each adjacent pair at one batch.

``<`` is a direction test (right − left > 0), ``≲`` (or ``≤``, ``<=``) an equivalence test
|right − left| ≤ tolerance (default 0.5).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from src.report.kinds.base import ClaimKind, Tests, register
from src.report.spec_checks import fail

RELATIONS = {"<": "<", "≲": "≲", "<=": "≲", "≤": "≲"}
ORDER = re.compile(r"^\s*[\w-]+(\s*(<=|≤|≲|<)\s*[\w-]+)+\s*$")


def parse_order(text: str) -> tuple[list[str], list[str]]:
    """``"bn ≲ gn < ln"`` → (["bn", "gn", "ln"], ["≲", "<"])."""
    parts = [p.strip() for p in re.split(r"(<=|≤|≲|<)", str(text))]
    return parts[0::2], [RELATIONS[p] for p in parts[1::2]]


@register("order")
class Order(ClaimKind):
    keys = frozenset({"batch", "order", "tolerance"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        if not isinstance(claim.get("batch"), int):
            fail(f"{key}.batch", claim.get("batch"), "must be an integer (the batch the order holds at)")
        if not isinstance(claim.get("order"), str) or not ORDER.match(claim["order"]):
            fail(f"{key}.order", claim.get("order"), "must look like 'bn ≲ gn < ln' (relations <, ≲, ≤, <=)")

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        batch = int(claim["batch"])
        norms, relations = parse_order(claim["order"])
        tolerance = float(claim.get("tolerance", 0.5))
        tests = Tests()
        for left, relation, right in zip(norms, relations, norms[1:], strict=False):
            a, b = self.cell(claim, norm=left, batch=batch), self.cell(claim, norm=right, batch=batch)
            if relation == "≲":
                tests.sizes.append(self.pair(b, a, "within", tolerance))
            else:
                tests.sizes.append(self.pair(b, a, "direction", 0.0))
        chain = [norms[0]] + [f"{relation} {norm}" for relation, norm in zip(relations, norms[1:], strict=True)]
        tests.statement = f"at batch {batch}: {' '.join(chain)}"
        if "≲" in relations:
            tests.statement += f" (≲: equivalent within ±{tolerance:g}; <: right − left > 0)"
        return tests
