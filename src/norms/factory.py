"""The norm factory handed to every model: one name, one way to build the layer after a conv."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from torch import nn

LayerBuilder = Callable[[int], nn.Module]


class Normalization:
    """Builds the activation-normalization layer that follows a convolution.

    Args:
        name: the norm's name on the command line (``norm=<name>``), recorded in every run.
        layer: ``layer(num_channels) -> nn.Module``, usually a Hydra ``_partial_`` of a layer class;
            ``None`` means no normalization (an identity).
        batch_dependent: whether training-mode statistics are computed across the batch (BN family).
    """

    def __init__(self, name: str, layer: LayerBuilder | None = None, batch_dependent: bool = False):
        self.name = name
        self.layer = layer
        self.batch_dependent = batch_dependent

    def __call__(self, num_channels: int, *, zero_init: bool = False) -> nn.Module:
        """A fresh layer for ``num_channels`` channels; ``zero_init`` sets its scale γ to 0.

        Zero-initialising the last norm of a residual block makes the block start as the identity
        (Goyal et al. 2017; used by the GN paper). Norms without a learnable scale ignore it.
        """
        if self.layer is None:
            return nn.Identity()
        module = self.layer(num_channels)
        weight = getattr(module, "weight", None)
        if zero_init and isinstance(weight, nn.Parameter):
            nn.init.zeros_(weight)
        return module

    def __repr__(self) -> str:
        return f"Normalization(name={self.name!r}, layer={self.layer!r})"


def describe_layer(module: nn.Module) -> str:
    """A short human-readable description of one norm layer, e.g. ``GroupNorm(groups=8, channels=16)``."""
    if isinstance(module, nn.GroupNorm):
        return f"GroupNorm(groups={module.num_groups}, channels={module.num_channels})"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f"{type(module).__name__}(channels={module.num_features})"
    return type(module).__name__


def describe_norm_layers(model: nn.Module) -> dict[str, int]:
    """Count the model's normalization layers by description (recorded in ``result.json``)."""
    norm_types = (nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.LayerNorm)
    return dict(Counter(describe_layer(m) for m in model.modules() if isinstance(m, norm_types)))
