"""What a claim kind is, and the registry of kinds by name.

A kind is a :class:`ClaimKind` subclass, registered under its name with :func:`register`. It owns

- ``keys``: the claim keys it reads (beside :data:`COMMON_KEYS`, which every claim may carry); any other
  key fails the spec check with one line;
- :meth:`ClaimKind.check`: its spec check, failing with :class:`src.report.spec_checks.SpecError`, e.g.
  ``report.claims[1] (gn_flat).within = -1: must be a number > 0``;
- :meth:`ClaimKind.columns`: the columns its cells name (they join the cell-means model's design);
- :meth:`ClaimKind.build`: its pre-specified tests, each a :class:`src.report.cells.Test` with contrast
  weights over :class:`src.report.cells.Cell` s, in a :class:`Tests`.

Estimating, deciding (direction, size, TOST, Holm), the convergence gate and the seeds still needed are
the evaluator's (:class:`src.report.claims.ClaimEvaluator`), the same for every kind. A study may name a
kind outside normlab by dotted path, ``kind: mypackage.mykinds.Interaction`` (imported with importlib,
like Hydra's ``_target_``): a class (instantiated without arguments) or an instance of :class:`ClaimKind`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from src.report.cells import Cell, Test
from src.report.spec_checks import SpecError, fail

COMMON_KEYS = frozenset(
    {"id", "claim", "text", "kind", "metric", "where", "published", "note", "convergence", "budget"}
)
KINDS: dict[str, ClaimKind] = {}  # name → kind, in the order they registered


@dataclass
class Tests:
    """A claim's tests as its kind built them: the size tests (the verdict), an optional direction test
    reported beside them, the statement shown, and notes."""

    sizes: list[Test] = field(default_factory=list)
    direction: Test | None = None
    statement: str = ""
    notes: list[str] = field(default_factory=list)


class ClaimKind:
    """One kind of claim: its keys, its spec check and the tests it builds (see the module docstring)."""

    name: ClassVar[str] = ""
    keys: ClassVar[frozenset[str]] = frozenset()

    def check(self, key: str, claim: dict[str, Any]) -> None:
        """Fail with one line (:func:`src.report.spec_checks.fail`) at the first problem of ``claim``; ``key``
        names it, e.g. ``report.claims[1] (gn_flat)``. Common keys and number bounds are checked already."""

    def columns(self, claim: dict[str, Any]) -> list[str]:
        """The columns this claim's cells name: ``where`` and the ``a``/``b`` mappings by default."""
        named = [*(claim.get("where") or {})]
        for side in ("a", "b"):
            if isinstance(claim.get(side), dict):
                named += list(claim[side])
        return named

    def build(self, claim: dict[str, Any], runs: pd.DataFrame) -> Tests:
        """The claim's tests; ``runs`` are the runs of the slice it is evaluated on."""
        raise NotImplementedError

    # helpers for kinds -------------------------------------------------------------------------

    @staticmethod
    def cell(claim: dict[str, Any], mapping: dict[str, Any] | None = None, **columns: Any) -> Cell:
        """A cell of this claim: its ``where`` columns, then ``mapping``, then ``columns``."""
        return Cell.of({**(claim.get("where") or {}), **(mapping or {})}, **columns)

    @staticmethod
    def pair(a: Cell, b: Cell, test: str, bound: float) -> Test:
        """The test of m(a) − m(b) (``direction``, ``at_least``, ``at_most`` or ``within``) against ``bound``."""
        return Test(f"{a} − {b}", test, bound, {a: 1.0, b: -1.0})


def register(name: str):
    """Class decorator: ``@register("flat")`` makes ``kind: flat`` mean this kind; a name another class
    registered already raises (as mmengine's registry does), so no kind silently replaces another."""

    def add(cls: type[ClaimKind]) -> type[ClaimKind]:
        known = KINDS.get(name)
        if known is not None and type(known).__qualname__ != cls.__qualname__:
            raise ValueError(f"claim kind {name!r} is already registered by {type(known).__qualname__}")
        cls.name = name
        KINDS[name] = cls()
        return cls

    return add


def kind_name(claim: dict[str, Any]) -> str:
    """The claim's kind as written: a registered name (any case) or a dotted path (kept as is)."""
    text = str(claim.get("kind", "")).strip()
    return text if "." in text else text.lower()


def find_kind(claim: dict[str, Any], key: str = "kind") -> ClaimKind:
    """The kind a claim names, registered or imported by dotted path; a one-line SpecError otherwise."""
    name = kind_name(claim)
    if name in KINDS:
        return KINDS[name]
    if "." not in name:
        fail(key, claim.get("kind"), f"must be one of {', '.join(KINDS)}, or a dotted path to a ClaimKind class")
    module_name, _, attribute = name.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        fail(key, name, f"cannot import it ({type(error).__name__}: {message}); is its directory on PYTHONPATH?")
    kind = target() if isinstance(target, type) and issubclass(target, ClaimKind) else target
    if not isinstance(kind, ClaimKind):
        fail(key, name, "must name a subclass (or an instance) of src.report.kinds.ClaimKind")
    return kind


__all__ = ["COMMON_KEYS", "KINDS", "ClaimKind", "SpecError", "Tests", "find_kind", "kind_name", "register"]
