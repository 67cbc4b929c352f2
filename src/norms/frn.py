"""Filter response normalization with a thresholded linear unit (Singh & Krishnan 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.norms.base import NormLayer
from src.norms.checks import LAYER_PREFIX, check_eps, config_rules, eps_rule


@config_rules(eps=eps_rule)
class FilterResponseNorm2d(NormLayer):
    """FRN, with the TLU that replaces the activation after it (Singh & Krishnan 2020).

    For x of shape (N, C, H, W), per sample n and channel c::

        ν²[n, c] = mean over (H, W) of x[n, c]²        (no mean subtraction)
        z = γ_c x / sqrt(ν²[n, c] + ε) + β_c
        y = max(z, τ_c)       with the TLU (activation=True), a learned per-channel threshold τ
        y = z                 without it (activation=False)

    γ starts at 1, β and τ at 0. No batch statistics, so train and eval agree.

    FRN+TLU replaces the norm *and* its ReLU (:attr:`replaces_activation`): where a model has
    conv → norm → ReLU, :class:`src.norms.Normalization` builds this layer with ``activation=True`` and
    the model puts ``nn.Identity`` where the ReLU was, so the network computes max(z, τ), not
    ReLU(max(z, τ)). Where a norm is not followed by an activation (the last norm of a residual block,
    before the addition; the ReLU after the addition stays, as in timm's ResNets) it is built with
    ``activation=False``: plain FRN, and no τ parameter.

    Args:
        num_features: the channel count C.
        eps: added to ν², >= 0 (the paper's default 1e-6).
        activation: apply the TLU max(·, τ) (and learn τ).
    """

    #: the layer applies its own activation (the TLU) when built with ``activation=True``.
    replaces_activation = True

    def __init__(self, num_features: int, eps: float = 1e-6, activation: bool = True):
        super().__init__(num_features)
        self.eps = check_eps(f"{LAYER_PREFIX}.eps", eps)
        self.activation = bool(activation)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        if self.activation:
            self.tau = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("tau", None)

    def forward(self, x: Tensor) -> Tensor:
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        y = x * torch.rsqrt(nu2 + self.eps) * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        if self.tau is None:
            return y
        return torch.maximum(y, self.tau.reshape(1, -1, 1, 1))

    def describe(self) -> str:
        """``FilterResponseNorm2d(channels=C)`` with the TLU; ``…, tlu=false)`` without."""
        return f"FilterResponseNorm2d(channels={self.num_features}{'' if self.activation else ', tlu=false'})"

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, activation={self.activation}"
