"""Pixel normalization (Karras et al. 2018, ProGAN §4.2)."""

from __future__ import annotations

import torch
from torch import Tensor

from src.norms.base import NormLayer
from src.norms.checks import LAYER_PREFIX, check_eps, config_rules, eps_rule


@config_rules(eps=eps_rule)
class PixelNorm(NormLayer):
    """Normalizes each pixel's feature vector to unit mean square over the channels; no parameters.

    For x of shape (N, C, H, W): y[n, c, h, w] = x[n, c, h, w] / sqrt(mean_c x[n, :, h, w]² + ε), the
    mean taken over C alone. Independent of the other samples, so train and eval agree.

    Args:
        num_features: the channel count C (only recorded: the layer has no per-channel parameters).
        eps: added to the mean square, >= 0 (ProGAN uses 1e-8).
    """

    def __init__(self, num_features: int, eps: float = 1e-8):
        super().__init__(num_features)
        self.eps = check_eps(f"{LAYER_PREFIX}.eps", eps)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
