"""The common base of the activation norms written in this package."""

from __future__ import annotations

import torch
from torch import nn


class NormLayer(nn.Module):
    """Base class of normlab's own activation norms over (N, C, H, W) inputs with C = ``num_features``.

    It only marks a module as a normalization layer, so that :func:`src.norms.describe_norm_layers`
    counts it in ``result.json``'s ``norm_layers``; :meth:`describe` is that entry.
    """

    def __init__(self, num_features: int):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features={num_features} is invalid: it must be an integer >= 1")
        self.num_features = num_features

    def init_affine(self, affine: bool) -> None:
        """The per-channel scale γ (ones) and shift β (zeros), or ``None`` for both without ``affine``."""
        if affine:
            self.weight = nn.Parameter(torch.ones(self.num_features))
            self.bias = nn.Parameter(torch.zeros(self.num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def describe(self) -> str:
        """A short description, e.g. ``PixelNorm(channels=16)``."""
        return f"{type(self).__name__}(channels={self.num_features})"

    def extra_repr(self) -> str:
        return f"{self.num_features}"
