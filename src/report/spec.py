"""Checks a study's ``report`` block before anything is computed.

A bad block fails with one line naming the key, its value and what is allowed, e.g.
``report.claims[1] (gn_flat).within = -1: must be a number > 0``.
"""

from __future__ import annotations

import re
from typing import Any

KINDS = ("difference", "less", "greater", "equivalent", "flat", "order")
REPORT_KEYS = {
    "title",
    "question",
    "bar_batch",
    "references",
    "claims",
    "alpha",
    "power",
    "convergence",
    "median_last",
    "factors",
}
CLAIM_KEYS = {
    "id",
    "claim",
    "text",
    "kind",
    "metric",
    "norm",
    "norms",
    "batch",
    "batches",
    "a",
    "b",
    "where",
    "at_least",
    "at_most",
    "margin",
    "within",
    "slope_within",
    "order",
    "tolerance",
    "published",
    "note",
    "convergence",
}
CONVERGENCE_KEYS = {"last_epochs", "max_val_drop", "max_train_loss_ratio"}
PUBLISHED_KEYS = {"value", "source", "conditions", "note"}
ORDER = re.compile(r"^\s*[\w-]+(\s*(<=|≤|≲|<)\s*[\w-]+)+\s*$")


class SpecError(ValueError):
    """A report block that cannot be used; the message is one line."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise SpecError(f"{key} = {value!r}: {allowed}")


def _number(key: str, value: Any, low: float | None = None, strict: bool = True, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(key, value, "must be a number")
    if low is not None and (value <= low if strict else value < low):
        _fail(key, value, f"must be a number {'>' if strict else '≥'} {low:g}")
    if high is not None and value >= high:
        _fail(key, value, f"must be a number < {high:g}")


def _keys(key: str, block: Any, allowed: set[str]) -> None:
    if not isinstance(block, dict):
        _fail(key, block, "must be a mapping")
    unknown = sorted(set(block) - allowed)
    if unknown:
        _fail(f"{key}.{unknown[0]}", block[unknown[0]], f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _convergence(key: str, block: Any) -> None:
    _keys(key, block, CONVERGENCE_KEYS)
    if "last_epochs" in block and (not isinstance(block["last_epochs"], int) or block["last_epochs"] < 1):
        _fail(f"{key}.last_epochs", block["last_epochs"], "must be an integer ≥ 1")
    for name in ("max_val_drop", "max_train_loss_ratio"):
        if name in block:
            _number(f"{key}.{name}", block[name], 0.0)
    if "max_train_loss_ratio" in block and block["max_train_loss_ratio"] < 1:
        _fail(f"{key}.max_train_loss_ratio", block["max_train_loss_ratio"], "must be a number ≥ 1")


def _cell(key: str, value: Any) -> None:
    if not isinstance(value, dict) or not value:
        _fail(key, value, "must be a mapping column → value, e.g. {norm: gn, batch: 8, epochs: 24}")
    for column, item in value.items():
        if not isinstance(column, str) or not column:
            _fail(key, column, "column names must be strings (norm, batch, epochs, model, a config key …)")
        if isinstance(item, dict | list) or item is None:
            _fail(f"{key}.{column}", item, "must be a single value (a number, a string or a boolean)")
    if "batch" in value and (not isinstance(value["batch"], int) or isinstance(value["batch"], bool)):
        _fail(f"{key}.batch", value["batch"], "must be an integer")


def _cells(key: str, claim: dict[str, Any]) -> None:
    """difference/less/greater/equivalent: a and b, or norm + two batches, or two norms + batch."""
    if "a" in claim or "b" in claim:
        _cell(f"{key}.a", claim.get("a"))
        _cell(f"{key}.b", claim.get("b"))
    elif "norms" in claim:
        if not isinstance(claim["norms"], list) or len(claim["norms"]) != 2:
            _fail(f"{key}.norms", claim["norms"], "must be a list of two norms (with batch: N)")
        if not isinstance(claim.get("batch"), int):
            _fail(f"{key}.batch", claim.get("batch"), "must be an integer (the batch both norms are compared at)")
    elif "norm" in claim:
        batches = claim.get("batches")
        if not isinstance(batches, list) or len(batches) != 2 or not all(isinstance(b, int) for b in batches):
            _fail(f"{key}.batches", batches, "must be a list of two integer batch sizes (with norm: X)")
    else:
        _fail(key, "(no cells)", "needs a and b, or norm with batches: [A, B], or norms: [X, Y] with batch: N")


def _published(key: str, items: Any) -> None:
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list):
        _fail(key, items, "must be a list of {value, source, conditions}")
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        _keys(where, item, PUBLISHED_KEYS)
        if not item.get("source"):
            _fail(f"{where}.source", item.get("source"), "must name where the number comes from")
        value = item.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and not item.get("conditions"):
            _fail(
                f"{where}.conditions",
                item.get("conditions"),
                "a published number must state its conditions (dataset, model, batch, schedule, differences)",
            )


def check_claim(key: str, claim: Any) -> None:
    """One claim of ``report.claims``."""
    if not isinstance(claim, dict):
        _fail(key, claim, "must be a mapping with at least kind")
    if claim.get("id"):
        key = f"{key} ({claim['id']})"
    _keys(key, claim, CLAIM_KEYS)
    kind = str(claim.get("kind", "")).lower()
    if kind not in KINDS:
        _fail(f"{key}.kind", claim.get("kind"), f"must be one of {', '.join(KINDS)}")
    for name in ("at_least", "at_most", "margin"):
        if name in claim:
            _number(f"{key}.{name}", claim[name])
    for name in ("within", "slope_within", "tolerance"):
        if name in claim:
            _number(f"{key}.{name}", claim[name], 0.0)
    if "convergence" in claim:
        _convergence(f"{key}.convergence", claim["convergence"])
    if "published" in claim and claim["published"] is not None:
        _published(f"{key}.published", claim["published"])
    if "where" in claim:
        _cell(f"{key}.where", claim["where"])
    if kind in ("difference", "less", "greater", "equivalent"):
        _cells(key, claim)
    if kind == "difference" and "at_least" not in claim and "at_most" not in claim:
        _fail(f"{key}.at_least", None, "a difference claim needs at_least and/or at_most (a number)")
    if kind == "equivalent" and "within" not in claim:
        _fail(f"{key}.within", None, "an equivalent claim needs within: δ > 0 (|a − b| ≤ δ)")
    if kind == "flat":
        if not isinstance(claim.get("norm"), str):
            _fail(f"{key}.norm", claim.get("norm"), "must name the norm whose error should be flat")
        if "within" not in claim and "at_most" not in claim:
            _fail(f"{key}.within", None, "a flat claim needs within: δ > 0 (small batch − large batch within ±δ)")
        batches = claim.get("batches")
        if batches is not None and (not isinstance(batches, list) or not all(isinstance(b, int) for b in batches)):
            _fail(f"{key}.batches", batches, "must be a list of integer batch sizes")
    if kind == "order":
        if not isinstance(claim.get("batch"), int):
            _fail(f"{key}.batch", claim.get("batch"), "must be an integer (the batch the order holds at)")
        if not isinstance(claim.get("order"), str) or not ORDER.match(claim["order"]):
            _fail(f"{key}.order", claim.get("order"), "must look like 'bn ≲ gn < ln' (relations <, ≲, ≤, <=)")


def check_spec(spec: Any) -> None:
    """The whole ``report`` block; raises :class:`SpecError` with one line at the first problem."""
    if spec is None:
        return
    _keys("report", spec, REPORT_KEYS)
    if "alpha" in spec:
        _number("report.alpha", spec["alpha"], 0.0, high=0.5)
    if "power" in spec:
        _number("report.power", spec["power"], 0.0, high=1.0)
    if "median_last" in spec and (not isinstance(spec["median_last"], int) or spec["median_last"] < 1):
        _fail("report.median_last", spec["median_last"], "must be an integer ≥ 1 (epochs)")
    if "convergence" in spec:
        _convergence("report.convergence", spec["convergence"])
    factors = spec.get("factors")
    if factors is not None and (not isinstance(factors, list) or not all(isinstance(f, str) and f for f in factors)):
        _fail("report.factors", factors, "must be a list of config keys the study's sweeps varied")
    claims = spec.get("claims") or []
    if not isinstance(claims, list):
        _fail("report.claims", claims, "must be a list of claims")
    for i, claim in enumerate(claims):
        check_claim(f"report.claims[{i}]", claim)
