"""Claim kinds, one module each, registered by name (:func:`register`).

Built in: ``difference``, ``less``, ``greater``, ``equivalent``, ``flat``, ``order`` and ``contrast``. A
study may name any other :class:`ClaimKind` by dotted path (``kind: mypackage.mykinds.Interaction``);
:mod:`src.report.kinds.base` says what a kind owns. A kind module needs only this package's names:
:class:`ClaimKind`, :class:`Tests`, :class:`Test`, :class:`Cell` and :func:`fail`.
"""

from src.report.cells import Cell, Test
from src.report.checks import SpecError, fail
from src.report.kinds import contrast, difference, equivalent, flat, greater, less, order  # noqa: F401  (register)
from src.report.kinds.base import COMMON_KEYS, KINDS, ClaimKind, Tests, find_kind, kind_name, register

__all__ = [
    "COMMON_KEYS",
    "KINDS",
    "Cell",
    "ClaimKind",
    "SpecError",
    "Test",
    "Tests",
    "fail",
    "find_kind",
    "kind_name",
    "register",
]
