"""``greater``: m(a) > m(b), the direction test on θ = m(a) − m(b); with ``margin: M`` also θ ≥ M."""

from __future__ import annotations

from src.report.kinds.base import register
from src.report.kinds.less import Less


@register("greater")
class Greater(Less):
    greater = True
