"""Claim kinds, one module each, registered by name (:func:`register`): every module of this package
is imported here, so adding a kind to normlab is adding its module.

Built in: ``difference``, ``less``, ``greater``, ``equivalent``, ``flat``, ``worst``, ``order`` and
``contrast``. A
study may name any other :class:`ClaimKind` by dotted path (``kind: mypackage.mykinds.Interaction``);
:mod:`src.report.kinds.base` says what a kind owns. A kind module needs only this package's names:
:class:`ClaimKind`, :class:`Tests`, :class:`Test`, :class:`Cell` and :func:`fail`.
"""

import importlib
import pkgutil

from src.report.cells import Cell, Test
from src.report.kinds.base import COMMON_KEYS, KINDS, ClaimKind, Tests, find_kind, kind_name, register
from src.report.spec_checks import SpecError, fail

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # each registers its kind(s)
    importlib.import_module(f"{__name__}.{_module}")

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
