"""Configuration checks of the norm layers, and the rules :meth:`Normalization.validate` applies.

Every invalid setting fails with one ``ValueError`` line that names the config key, the value and
what is allowed, e.g. ``norm.layer.virtual_batch=3 is invalid: it must divide batch=32``.

A rule is ``rule(key, value, batch)``: it raises that error or returns. The rules live with the layer
they check: a layer class or function of normlab declares them with :func:`config_rules`, e.g.
``@config_rules(eps=eps_rule, groups=int_rule(1))``, which attaches ``{"eps": …, "groups": …}`` to it as
its ``config_rules`` attribute (a subclass inherits its base's rules unless it declares its own).
Targets normlab does not own (``torch.nn.BatchNorm2d``, torch's spectral norm, …) get theirs from
:data:`FOREIGN_RULES`, keyed by the target object itself. So a keyword is only ever checked by the
rule of the layer that takes it: ``groups`` of GN is not ``groups`` of some other layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from torch import nn
from torch.nn.utils import parametrizations

LAYER_PREFIX = "norm.layer"
WEIGHT_PREFIX = "norm.weight"

Rule = Callable[[str, Any, "int | None"], object]
Target = TypeVar("Target")


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


# ---- rules: check(key, value, batch) ------------------------------------------------------------


def eps_rule(key: str, value: object, batch: int | None = None) -> None:
    """ε >= 0."""
    check_eps(key, value)


def momentum_rule(key: str, value: object, batch: int | None = None) -> None:
    """A momentum in [0, 1]."""
    check_momentum(key, value)


def optional_momentum_rule(key: str, value: object, batch: int | None = None) -> None:
    """A momentum in [0, 1], or ``None`` (torch's BN: a cumulative average)."""
    if value is not None:
        check_momentum(key, value)


def virtual_batch_rule(key: str, value: object, batch: int | None = None) -> None:
    """An integer >= 1 that divides ``batch`` (when known)."""
    check_virtual_batch(key, value, batch)


def int_rule(minimum: int) -> Rule:
    """The rule "an integer >= ``minimum``"."""

    def rule(key: str, value: object, batch: int | None = None) -> None:
        check_int_at_least(key, value, minimum)

    rule.__doc__ = f"An integer >= {minimum}."
    return rule


def number_rule(minimum: float) -> Rule:
    """The rule "a number >= ``minimum``"."""

    def rule(key: str, value: object, batch: int | None = None) -> None:
        check_number_at_least(key, value, minimum)

    rule.__doc__ = f"A number >= {minimum:g}."
    return rule


def config_rules(**rules: Rule) -> Callable[[Target], Target]:
    """Decorator: declare the rules of a layer class or function's keyword arguments, by keyword.

    ``@config_rules(eps=eps_rule)`` sets ``target.config_rules = {"eps": eps_rule}`` and returns the target.
    """

    def attach(target: Target) -> Target:
        target.config_rules = dict(rules)  # type: ignore[attr-defined]
        return target

    return attach


#: rules of targets normlab does not own, keyed by the target object (not by keyword name).
FOREIGN_RULES: dict[object, Mapping[str, Rule]] = {
    nn.BatchNorm2d: {"eps": eps_rule, "momentum": optional_momentum_rule},
    nn.SyncBatchNorm: {"eps": eps_rule, "momentum": optional_momentum_rule},
    nn.InstanceNorm2d: {"eps": eps_rule, "momentum": optional_momentum_rule},
    nn.GroupNorm: {"num_groups": int_rule(1), "eps": eps_rule},
    parametrizations.spectral_norm: {"n_power_iterations": int_rule(1), "eps": eps_rule},
}


def rules_for(target: object) -> Mapping[str, Rule]:
    """The rules of ``target`` (a layer class or function): its own ``config_rules``, else its entry in
    :data:`FOREIGN_RULES`; for a class, the first of its bases (in method resolution order) that has
    either. A target with neither has no rules."""
    for owner in target.__mro__ if isinstance(target, type) else (target,):
        own = vars(owner).get("config_rules") if isinstance(owner, type) else getattr(owner, "config_rules", None)
        if own is not None:
            return own
        try:
            foreign = FOREIGN_RULES.get(owner)
        except TypeError:  # an unhashable target
            foreign = None
        if foreign is not None:
            return foreign
    return {}


def accepted_arguments(target: object) -> list[str] | None:
    """The keyword arguments ``target`` (a class or function) takes, those of its base classes' constructors
    included where it passes ``**kwargs`` on; None when anything goes (a ``**kwargs`` at the end of the chain,
    or no signature to read)."""
    names: list[str] = []
    owners = [c for c in type.mro(target) if "__init__" in vars(c)] if isinstance(target, type) else [target]
    for owner in owners:
        try:
            parameters = inspect.signature(owner.__init__ if isinstance(target, type) else owner).parameters
        except (TypeError, ValueError):
            return None
        names += [n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return list(dict.fromkeys(names))
    return None


def unknown_argument(
    prefix: str, target: object, arguments: Mapping[str, Any], supplied: Iterable[str] = ()
) -> ValueError | None:
    """The error of the first of ``arguments`` that ``target`` does not take: ``<prefix>.<name>=<value> is
    invalid: <target> takes no '<name>'; its config keys are …`` (less the ``supplied`` ones, which the code
    passes); None when it takes them all."""
    accepted = accepted_arguments(target)
    if accepted is None:
        return None
    for name, value in arguments.items():
        if name not in accepted:
            shown = ", ".join(a for a in accepted if a not in set(supplied)) or "none"
            label = getattr(target, "__name__", str(target))
            return ValueError(
                f"{prefix}.{name}={value!r} is invalid: {label} takes no {name!r}; its config keys are {shown}"
            )
    return None


def check_arguments(prefix: str, target: object, arguments: Mapping[str, Any], batch: int | None = None) -> None:
    """Check that ``target`` takes every argument (:func:`unknown_argument`), then every argument that has a
    rule (:func:`rules_for`); ``prefix`` names the config node."""
    error = unknown_argument(prefix, target, arguments)
    if error is not None:
        raise error
    rules = rules_for(target)
    for name, value in arguments.items():
        rule = rules.get(name)
        if rule is not None:
            rule(f"{prefix}.{name}", value, batch)
