"""Normalization layers and the factory that is the only place models learn what a norm is.

A norm is chosen by name in ``conf/norm/<name>.yaml``; Hydra instantiates a :class:`Normalization`
whose ``layer`` is a partial constructor ``layer(num_channels) -> nn.Module`` (the activation norm after
each conv) and whose ``weight`` is a partial ``weight(module)`` that reparametrizes every conv/linear
weight. Models call the :class:`Normalization` with a channel count and never import a norm class themselves.
"""

from src.norms.base import NormLayer
from src.norms.batch import BatchRenorm2d, GhostBatchNorm2d, MeanOnlyBatchNorm2d
from src.norms.factory import Normalization, describe_norm_layers, norm_state
from src.norms.frn import FilterResponseNorm2d
from src.norms.layers import group_norm, instance_norm, layer_norm, resolve_groups
from src.norms.pixel import PixelNorm
from src.norms.switchable import SwitchableNorm2d
from src.norms.sync import SyncBatchNorm2d
from src.norms.weight import (
    WeightStandardization,
    spectral_norm,
    standardize_convolutions,
    weight_norm,
    weight_standardization,
)

__all__ = [
    "BatchRenorm2d",
    "FilterResponseNorm2d",
    "GhostBatchNorm2d",
    "MeanOnlyBatchNorm2d",
    "NormLayer",
    "Normalization",
    "PixelNorm",
    "SwitchableNorm2d",
    "SyncBatchNorm2d",
    "WeightStandardization",
    "describe_norm_layers",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "norm_state",
    "resolve_groups",
    "spectral_norm",
    "standardize_convolutions",
    "weight_norm",
    "weight_standardization",
]
