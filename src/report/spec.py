"""Checks a study's ``report`` block before anything is computed.

A bad block fails with one line naming the key, its value and what is allowed, e.g.
``report.claims[1] (gn_flat).within = -1: must be a number > 0``. What a claim may hold beside the keys
every claim shares is its kind's (:mod:`src.report.kinds`): its keys and its own check.
"""

from __future__ import annotations

from typing import Any

from src.report.kinds import COMMON_KEYS, KINDS, find_kind
from src.report.spec_checks import SpecError, cell, fail, keys, number

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
    "where",
    "budget",
    "stability",
}
CLAIM_KEYS = COMMON_KEYS | {key for kind in KINDS.values() for key in kind.keys}  # every built-in kind's
CONVERGENCE_KEYS = {"last_epochs", "max_val_drop", "max_train_loss_ratio", "max_schedule_gain", "annealed_below"}
CLAIM_CONVERGENCE_KEYS = CONVERGENCE_KEYS | {"waived"}  # a claim may waive the gate, stating why
PUBLISHED_KEYS = {"value", "source", "conditions", "note"}


def _convergence(key: str, block: Any, allowed: set[str] = CONVERGENCE_KEYS) -> None:
    keys(key, block, allowed)
    if "waived" in block and (not isinstance(block["waived"], str) or not block["waived"].strip()):
        fail(f"{key}.waived", block["waived"], "must state why the gate does not apply to this claim")
    if "last_epochs" in block and (not isinstance(block["last_epochs"], int) or block["last_epochs"] < 1):
        fail(f"{key}.last_epochs", block["last_epochs"], "must be an integer ≥ 1")
    for name in ("max_val_drop", "max_train_loss_ratio", "max_schedule_gain", "annealed_below"):
        if name in block:
            number(f"{key}.{name}", block[name], 0.0)
    if "max_train_loss_ratio" in block and block["max_train_loss_ratio"] < 1:
        fail(f"{key}.max_train_loss_ratio", block["max_train_loss_ratio"], "must be a number ≥ 1")


def _published(key: str, items: Any) -> None:
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list):
        fail(key, items, "must be a list of {value, source, conditions}")
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        keys(where, item, PUBLISHED_KEYS)
        if not item.get("source"):
            fail(f"{where}.source", item.get("source"), "must name where the number comes from")
        value = item.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and not item.get("conditions"):
            fail(
                f"{where}.conditions",
                item.get("conditions"),
                "a published number must state its conditions (dataset, model, batch, schedule, differences)",
            )


def check_claim(key: str, claim: Any) -> None:
    """One claim of ``report.claims``: the keys every claim shares, then its kind's own check."""
    if not isinstance(claim, dict):
        fail(key, claim, "must be a mapping with at least kind")
    if claim.get("id"):
        key = f"{key} ({claim['id']})"
    kind = find_kind(claim, f"{key}.kind")
    keys(key, claim, COMMON_KEYS | kind.keys)
    for name in ("at_least", "at_most", "margin"):
        if name in claim:
            number(f"{key}.{name}", claim[name])
    for name in ("within", "tolerance"):
        if name in claim:
            number(f"{key}.{name}", claim[name], 0.0)
    if "convergence" in claim:
        _convergence(f"{key}.convergence", claim["convergence"], CLAIM_CONVERGENCE_KEYS)
    if "budget" in claim and claim["budget"] != "fixed":
        fail(f"{key}.budget", claim["budget"], "must be fixed (a statement about the claim's schedule exactly)")
    if "published" in claim and claim["published"] is not None:
        _published(f"{key}.published", claim["published"])
    if "where" in claim:
        cell(f"{key}.where", claim["where"])
    kind.check(key, claim)


def check_spec(spec: Any) -> None:
    """The whole ``report`` block; raises :class:`SpecError` with one line at the first problem."""
    if spec is None:
        return
    keys("report", spec, REPORT_KEYS)
    if "alpha" in spec:
        number("report.alpha", spec["alpha"], 0.0, high=0.5)
    if "power" in spec:
        number("report.power", spec["power"], 0.0, high=1.0)
    if "median_last" in spec and (not isinstance(spec["median_last"], int) or spec["median_last"] < 1):
        fail("report.median_last", spec["median_last"], "must be an integer ≥ 1 (epochs)")
    if "convergence" in spec:
        _convergence("report.convergence", spec["convergence"])
    if "where" in spec:
        cell("report.where", spec["where"])
    if "budget" in spec and spec["budget"] != "fixed":
        fail("report.budget", spec["budget"], "must be fixed (every claim is about its schedule exactly)")
    if "stability" in spec:
        keys("report.stability", spec["stability"], {"margin"})
        number("report.stability.margin", spec["stability"].get("margin", 1.0), 0.0)
    factors = spec.get("factors")
    if factors is not None and (not isinstance(factors, list) or not all(isinstance(f, str) and f for f in factors)):
        fail("report.factors", factors, "must be a list of config keys the study's sweeps varied")
    claims = spec.get("claims") or []
    if not isinstance(claims, list):
        fail("report.claims", claims, "must be a list of claims")
    for i, claim in enumerate(claims):
        check_claim(f"report.claims[{i}]", claim)


__all__ = ["CLAIM_KEYS", "KINDS", "REPORT_KEYS", "SpecError", "check_claim", "check_spec"]
