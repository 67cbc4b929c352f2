"""Normalization layers and the factory that is the only place models learn what a norm is.

A norm is chosen by name in ``conf/norm/<name>.yaml``; Hydra instantiates a :class:`Normalization`
whose ``layer`` is a partial constructor ``layer(num_channels) -> nn.Module``. Models call the
:class:`Normalization` with a channel count and never import a norm class themselves.
"""

from src.norms.factory import Normalization, describe_norm_layers, norm_state
from src.norms.layers import group_norm, instance_norm, layer_norm, resolve_groups

__all__ = [
    "Normalization",
    "describe_norm_layers",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "norm_state",
    "resolve_groups",
]
