"""The two cells a ``difference``, ``less``, ``greater`` or ``equivalent`` claim compares."""

from __future__ import annotations

from typing import Any

from src.report.cells import Cell
from src.report.kinds.base import ClaimKind
from src.report.spec_checks import cell, fail


class PairKind(ClaimKind):
    """A claim on m(a) − m(b): cells ``a`` and ``b`` (mappings column → value), or the shorthands
    ``norms: [X, Y]`` + ``batch: N`` and ``norm: X`` + ``batches: [A, B]``; ``where`` joins both."""

    keys = frozenset({"a", "b", "norm", "norms", "batch", "batches"})

    def check(self, key: str, claim: dict[str, Any]) -> None:
        if "a" in claim or "b" in claim:
            cell(f"{key}.a", claim.get("a"))
            cell(f"{key}.b", claim.get("b"))
        elif "norms" in claim:
            if not isinstance(claim["norms"], list) or len(claim["norms"]) != 2:
                fail(f"{key}.norms", claim["norms"], "must be a list of two norms (with batch: N)")
            if not isinstance(claim.get("batch"), int):
                fail(f"{key}.batch", claim.get("batch"), "must be an integer (the batch both norms are compared at)")
        elif "norm" in claim:
            batches = claim.get("batches")
            if not isinstance(batches, list) or len(batches) != 2 or not all(isinstance(b, int) for b in batches):
                fail(f"{key}.batches", batches, "must be a list of two integer batch sizes (with norm: X)")
        else:
            fail(key, "(no cells)", "needs a and b, or norm with batches: [A, B], or norms: [X, Y] with batch: N")

    def cells(self, claim: dict[str, Any]) -> tuple[Cell, Cell]:
        """(a, b) of the claim."""
        if "a" in claim and "b" in claim:
            return self.cell(claim, claim["a"]), self.cell(claim, claim["b"])
        if "norms" in claim:
            first, second = claim["norms"]
            return self.cell(claim, norm=first, batch=claim["batch"]), self.cell(
                claim, norm=second, batch=claim["batch"]
            )
        first, second = claim["batches"]
        return self.cell(claim, norm=claim["norm"], batch=first), self.cell(claim, norm=claim["norm"], batch=second)
