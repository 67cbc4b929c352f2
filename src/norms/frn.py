"""Filter response normalization with a thresholded linear unit (Singh & Krishnan 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.norms.base import NormLayer
from src.norms.checks import LAYER_PREFIX, check_eps, config_rules, eps_rule


@config_rules(eps=eps_rule)
class FilterResponseNorm2d(NormLayer):
    """FRN + TLU: per sample and channel, divide by the root mean square over (H, W); then max(·, τ).

    For x of shape (N, C, H, W)::

        ν²[n, c] = mean over (H, W) of x[n, c]²        (no mean subtraction)
        x̂ = x / sqrt(ν² + ε)
        y = max(γ_c x̂ + β_c, τ_c)                      (TLU, learned per-channel threshold τ)

    γ starts at 1, β and τ at 0. No batch statistics, so train and eval agree.

    FRN+TLU is meant to replace the norm *and* its ReLU. normlab's models keep their ReLU after every
    norm, so the network computes ReLU(max(z, τ)) = max(z, max(τ, 0)): the same as the TLU while
    τ >= 0, and a plain ReLU on the normalized response for channels whose τ goes negative. We
    accept this rather than special-case the models (the norm axis only swaps the layer).

    Args:
        num_features: the channel count C.
        eps: added to ν², >= 0 (the paper's default 1e-6).
    """

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__(num_features)
        self.eps = check_eps(f"{LAYER_PREFIX}.eps", eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.tau = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        y = x * torch.rsqrt(nu2 + self.eps) * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return torch.maximum(y, self.tau.reshape(1, -1, 1, 1))
