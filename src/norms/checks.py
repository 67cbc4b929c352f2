"""Configuration checks shared by the norm layers and :meth:`Normalization.validate`.

Every invalid setting fails with one ``ValueError`` line that names the config key, the value and
what is allowed, e.g. ``norm.layer.virtual_batch=3 is invalid: it must divide batch=32``.

The checks are keyed by keyword name (:data:`KEYWORD_RULES`), so :meth:`Normalization.validate` can
check a Hydra partial (``layer`` or ``weight``) from its keywords alone, before any layer is built,
and every layer constructor runs the same rule on its own arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

LAYER_PREFIX = "norm.layer"
WEIGHT_PREFIX = "norm.weight"


def invalid(key: str, value: object, allowed: str) -> ValueError:
    """The error for ``key=value``: ``ValueError("<key>=<value> is invalid: <allowed>")``."""
    return ValueError(f"{key}={value} is invalid: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int_at_least(key: str, value: object, minimum: int) -> int:
    """``value`` must be an integer ``>= minimum``."""
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise invalid(key, value, f"it must be an integer >= {minimum}")
    return int(value)  # type: ignore[arg-type]


def check_number_at_least(key: str, value: object, minimum: float) -> float:
    """``value`` must be a number ``>= minimum``."""
    if not _is_number(value) or value < minimum:  # type: ignore[operator]
        raise invalid(key, value, f"it must be a number >= {minimum:g}")
    return float(value)  # type: ignore[arg-type]


def check_eps(key: str, value: object) -> float:
    """An ε added to a variance or norm must be a number ``>= 0``."""
    return check_number_at_least(key, value, 0.0)


def check_momentum(key: str, value: object) -> float:
    """A running-average momentum must lie in [0, 1]."""
    if not _is_number(value) or not 0.0 <= value <= 1.0:  # type: ignore[operator]
        raise invalid(key, value, "it must be a number in [0, 1]")
    return float(value)  # type: ignore[arg-type]


def check_virtual_batch(key: str, value: object, batch: int | None = None) -> int:
    """A ghost-batch size must be an integer >= 1 and, when the batch is known, divide it."""
    virtual_batch = check_int_at_least(key, value, 1)
    if batch is not None and batch % virtual_batch:
        raise invalid(key, value, f"it must divide batch={batch} (the per-device batch is split into virtual batches)")
    return virtual_batch


Rule = Callable[[str, Any, "int | None"], object]

#: keyword name -> check(key, value, batch); applied to any ``layer``/``weight`` partial that has the keyword.
KEYWORD_RULES: dict[str, Rule] = {
    "eps": lambda key, value, batch: check_eps(key, value),
    "groups": lambda key, value, batch: check_int_at_least(key, value, 1),
    "min_group_size": lambda key, value, batch: check_int_at_least(key, value, 1),
    "momentum": lambda key, value, batch: value is None or check_momentum(key, value),
    "virtual_batch": check_virtual_batch,
    "r_max": lambda key, value, batch: check_number_at_least(key, value, 1.0),
    "d_max": lambda key, value, batch: check_number_at_least(key, value, 0.0),
    "warmup_steps": lambda key, value, batch: check_int_at_least(key, value, 0),
    "n_power_iterations": lambda key, value, batch: check_int_at_least(key, value, 1),
}


def check_keywords(prefix: str, keywords: Mapping[str, Any], batch: int | None = None) -> None:
    """Apply :data:`KEYWORD_RULES` to every keyword that has a rule; ``prefix`` names the config node."""
    for name, value in keywords.items():
        rule = KEYWORD_RULES.get(name)
        if rule is not None:
            rule(f"{prefix}.{name}", value, batch)
