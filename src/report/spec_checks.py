"""One-line checks of a study's ``report`` block, shared by :mod:`src.report.spec` and the claim kinds.

Each fails with :class:`SpecError` naming the key, its value and what is allowed, e.g.
``report.claims[1] (gn_flat).within = -1: must be a number > 0``.
"""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A report block that cannot be used; the message is one line."""


def fail(key: str, value: Any, allowed: str) -> None:
    raise SpecError(f"{key} = {value!r}: {allowed}")


def number(key: str, value: Any, low: float | None = None, strict: bool = True, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(key, value, "must be a number")
    if low is not None and (value <= low if strict else value < low):
        fail(key, value, f"must be a number {'>' if strict else '≥'} {low:g}")
    if high is not None and value >= high:
        fail(key, value, f"must be a number < {high:g}")


def keys(key: str, block: Any, allowed: set[str] | frozenset[str]) -> None:
    if not isinstance(block, dict):
        fail(key, block, "must be a mapping")
    unknown = sorted(set(block) - allowed)
    if unknown:
        fail(f"{key}.{unknown[0]}", block[unknown[0]], f"unknown key; allowed: {', '.join(sorted(allowed))}")


def cell(key: str, value: Any) -> None:
    """A claim cell: a mapping column → single value, e.g. ``{norm: gn, batch: 8, epochs: 24}``."""
    if not isinstance(value, dict) or not value:
        fail(key, value, "must be a mapping column → value, e.g. {norm: gn, batch: 8, epochs: 24}")
    for column, item in value.items():
        if not isinstance(column, str) or not column:
            fail(key, column, "column names must be strings (norm, batch, epochs, model, a config key …)")
        if isinstance(item, dict | list) or item is None:
            fail(f"{key}.{column}", item, "must be a single value (a number, a string or a boolean)")
    if "batch" in value and (not isinstance(value["batch"], int) or isinstance(value["batch"], bool)):
        fail(f"{key}.batch", value["batch"], "must be an integer")
