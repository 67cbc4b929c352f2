"""The norm factory handed to every model: one name, one way to build the layer after a conv."""

from __future__ import annotations

import functools
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from src.norms.base import NormLayer
from src.norms.checks import LAYER_PREFIX, WEIGHT_PREFIX, check_arguments

log = logging.getLogger(__name__)

LayerBuilder = Callable[[int], nn.Module]
WeightReparam = Callable[[nn.Module], object]
WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class NormInfo:
    """What a norm says about itself to reports (``info:`` in ``conf/norm/<name>.yaml``).

    Attributes:
        label: the name tables and plots show, e.g. ``Group Norm``.
        family: ``batch`` (statistics over the batch), ``group`` (per-sample statistics over channel
            groups: GN, LN, IN), ``mixture``, ``weight`` (reparametrizes weights instead), ``other``, ``none``.
        order: the norm's place in tables and legends (smaller first; the GN paper's order for its norms).
        color: its colour in every plot (a matplotlib colour).
        shift: whether the norm adds a learned per-channel shift β after normalizing.
    """

    label: str
    family: str = "other"
    order: int = 1000
    color: str | None = None
    shift: bool = True

    @classmethod
    def from_config(cls, name: str, info: Mapping[str, Any] | None) -> NormInfo:
        """From the YAML's ``info:`` block; an unknown key fails with one line naming key and allowed keys."""
        info = dict(info or {})
        allowed = [f.name for f in fields(cls)]
        for key in info:
            if key not in allowed:
                raise ValueError(f"norm.info.{key} is not a known key: allowed are {', '.join(allowed)}")
        info.setdefault("label", name)
        return cls(**info)


class Normalization:
    """Builds the activation-normalization layer that follows a convolution.

    A norm may also (or instead) reparametrize weights: ``weight(module)`` is applied in place to
    every ``nn.Conv2d`` and ``nn.Linear`` of the finished model by :meth:`apply_weight`, so that
    weight-side methods (weight norm, spectral norm) sit on the same ``norm`` axis as activation norms.

    What models ask of it, at each conv → norm (→ activation) position with C output channels:

    - :meth:`adds_shift`: whether the norm adds a learned per-channel shift β (then the conv has no
      bias: y = γ x̂ + β absorbs it; otherwise the conv gets its own bias b, y = norm(W * x + b));
    - ``norm(C, zero_init=..., activation=...)``: the layer; ``activation=True`` where the model
      applies an activation after it, which a norm that brings its own (FRN's TLU) then computes;
    - :meth:`activation`: the activation module to put after that layer: ``nn.ReLU``, or
      ``nn.Identity`` when the layer has taken the activation over.

    Args:
        name: the norm's name on the command line (``norm=<name>``), recorded in every run.
        layer: ``layer(num_channels) -> nn.Module``, usually a Hydra ``_partial_`` of a layer class;
            ``None`` means no activation normalization (an identity).
        weight: ``weight(module)`` reparametrizes one conv/linear layer in place; ``None`` for none.
        batch_dependent: whether training-mode statistics are computed across the batch (BN family).
        synchronized: whether those statistics span the batches of all processes (SyncBN under DDP).
        info: what the norm says about itself for reports (:class:`NormInfo`'s fields: ``label``,
            ``family``, ``order``, ``color``, ``shift``); written into every run record as ``norm_info``.
            Presentation only: not part of the config hash (``src/run/config_keys.py``).
    """

    def __init__(
        self,
        name: str,
        layer: LayerBuilder | None = None,
        weight: WeightReparam | None = None,
        batch_dependent: bool = False,
        synchronized: bool = False,
        info: Mapping[str, Any] | None = None,
    ):
        self.name = name
        self.layer = layer
        self.weight = weight
        self.batch_dependent = batch_dependent
        self.synchronized = synchronized
        self.norm_info = NormInfo.from_config(name, info)
        self._shifts: dict[int, bool] = {}
        self._logged: set[str] = set()

    def info(self) -> dict[str, Any]:
        """The run record's ``norm_info``: name, label, family, plot order and colour, affine shift,
        batch dependence and synchronization."""
        return {
            "name": self.name,
            **asdict(self.norm_info),
            "batch_dependent": bool(self.batch_dependent),
            "synchronized": bool(self.synchronized),
        }

    def validate(self, batch: int) -> None:
        """Fail before training when the norm's settings are invalid or cannot work with this batch size.

        ``layer`` and ``weight`` are checked from their arguments alone, before any layer is built:
        every keyword of the partial, and every default of its target's signature, is checked with the
        rule its target declares for it (:func:`src.norms.checks.rules_for`: the target's own
        ``config_rules``, or for a target normlab does not own its entry in
        :data:`src.norms.checks.FOREIGN_RULES`), e.g. ``eps >= 0``, GN's ``groups >= 1``, and ghost BN's
        ``virtual_batch`` must divide ``batch``. Errors are one ``ValueError`` line naming the config
        key (``norm.layer.<key>`` or ``norm.weight.<key>``) and the allowed values.
        """
        for prefix, builder in ((LAYER_PREFIX, self.layer), (WEIGHT_PREFIX, self.weight)):
            if builder is not None:
                check_arguments(prefix, builder_target(builder), builder_arguments(builder), batch)
        if self.batch_dependent and batch < 2:
            log.warning("norm=%s computes statistics over the batch, and batch=%d has one sample", self.name, batch)

    def apply_weight(self, model: nn.Module) -> nn.Module:
        """Apply the weight reparametrization (if any) to every conv and linear layer of ``model``."""
        if self.weight is not None:
            for module in list(model.modules()):
                if isinstance(module, WEIGHT_LAYERS):
                    self.weight(module)
        return model

    @property
    def replaces_activation(self) -> bool:
        """Whether the layer brings its own activation (its target's ``replaces_activation``, e.g. FRN's TLU)."""
        return self.layer is not None and bool(getattr(builder_target(self.layer), "replaces_activation", False))

    def activation(self, inplace: bool = False) -> nn.Module:
        """The activation a model applies after ``norm(C, activation=True)``: ``nn.ReLU``, or ``nn.Identity``
        when the layer computes the activation itself (:attr:`replaces_activation`). Parameter-free."""
        return nn.Identity() if self.replaces_activation else nn.ReLU(inplace=inplace)

    def adds_shift(self, num_channels: int) -> bool:
        """Whether the layer for ``num_channels`` channels adds a learned per-channel shift β.

        Found by building a probe layer and looking for a ``bias`` that is an ``nn.Parameter``: BN, GN,
        LN, IN, FRN, mean-only BN … have one; no layer (``None``: an identity), PixelNorm and any
        layer built with ``affine=False`` have none. The probe is built under a forked RNG, so it leaves
        the random stream (hence every model's initialisation) as it was. Cached per channel count.
        """
        if self.layer is None:
            return False
        if num_channels not in self._shifts:
            with torch.random.fork_rng(devices=[]):
                probe = self.layer(num_channels)
            self._shifts[num_channels] = isinstance(getattr(probe, "bias", None), nn.Parameter)
        return self._shifts[num_channels]

    def __call__(self, num_channels: int, *, zero_init: bool = False, activation: bool = False) -> nn.Module:
        """A fresh layer for ``num_channels`` channels.

        Args:
            num_channels: C.
            zero_init: set its scale γ to 0. Zero-initialising the last norm of a residual block makes
                the block start as the identity (Goyal et al. 2017; used by the GN paper). Norms without
                a learnable scale ignore it.
            activation: whether the model applies an activation right after this layer. A layer that
                replaces the activation (:attr:`replaces_activation`) is built with ``activation=True``
                then (FRN applies its TLU, and :meth:`activation` gives ``nn.Identity``) and with
                ``activation=False`` otherwise (e.g. the last norm of a residual block, before the
                addition). Other layers ignore it.

        The first layer of each description (e.g. ``GroupNorm(groups=8, channels=16)``) this
        ``Normalization`` builds is logged with the configured ``norm.layer`` arguments, once per
        instance (a run builds its own), so the log shows what was requested and what each layer got.
        """
        if self.layer is None:
            return nn.Identity()
        if self.replaces_activation:
            module = self.layer(num_channels, activation=activation)
        else:
            module = self.layer(num_channels)
        weight = getattr(module, "weight", None)
        if zero_init and isinstance(weight, nn.Parameter):
            nn.init.zeros_(weight)
        self._log_layer(num_channels, module)
        return module

    def _log_layer(self, num_channels: int, module: nn.Module) -> None:
        description = describe_layer(module)
        if description in self._logged:
            return
        self._logged.add(description)
        keywords = self.layer.keywords if isinstance(self.layer, functools.partial) else {}
        requested = ", ".join(f"{key}={value}" for key, value in keywords.items()) or "defaults"
        log.info("norm %s: %d channels -> %s (norm.layer: %s)", self.name, num_channels, description, requested)

    def __repr__(self) -> str:
        return f"Normalization(name={self.name!r}, layer={self.layer!r}, weight={self.weight!r})"


def builder_target(builder: Callable[..., Any]) -> Callable[..., Any]:
    """The class or function a ``layer``/``weight`` builder calls (a partial's ``func``; else itself)."""
    return builder.func if isinstance(builder, functools.partial) else builder


def builder_arguments(builder: Callable[..., Any]) -> dict[str, Any]:
    """The keyword arguments a ``layer``/``weight`` builder will be called with: its target's defaults
    updated by the partial's keywords (a plain callable gives its defaults)."""
    keywords = dict(builder.keywords) if isinstance(builder, functools.partial) else {}
    target = builder.func if isinstance(builder, functools.partial) else builder
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return keywords
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {**defaults, **keywords}


def describe_layer(module: nn.Module) -> str:
    """A short human-readable description of one norm layer, e.g. ``GroupNorm(groups=8, channels=16)``.

    A reparametrized weight is described by its parametrizations and layer type, e.g.
    ``_WeightNorm(Conv2d)``.
    """
    if isinstance(module, NormLayer):
        return module.describe()
    if parametrize.is_parametrized(module, "weight"):
        names = "+".join(type(p).__name__ for p in module.parametrizations.weight)
        return f"{names}({type(module).__name__.removeprefix('Parametrized')})"
    if isinstance(module, nn.GroupNorm):
        return f"GroupNorm(groups={module.num_groups}, channels={module.num_channels})"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f"{type(module).__name__}(channels={module.num_features})"
    return type(module).__name__


def describe_norm_layers(model: nn.Module) -> dict[str, int]:
    """Count the model's normalization layers, and layers with a reparametrized weight, by description
    (recorded in ``result.json``)."""
    norm_types = (nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.LayerNorm, NormLayer)
    return dict(
        Counter(
            describe_layer(m)
            for m in model.modules()
            if isinstance(m, norm_types) or parametrize.is_parametrized(m, "weight")
        )
    )


def norm_state(model: nn.Module) -> dict[str, object]:
    """What norm layers report about themselves at the end of training, by module name.

    Any layer may define ``record_state() -> dict`` (e.g. the learned mixture weights of switchable
    norm); the result is written into ``result.json`` under ``norm_state``.
    """
    return {
        name: module.record_state()
        for name, module in model.named_modules()
        if callable(getattr(module, "record_state", None))
    }
