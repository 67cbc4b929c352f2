"""Switchable normalization (Luo et al. 2019), written from the paper's definitions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.norms.base import NormLayer
from src.norms.checks import LAYER_PREFIX, check_eps, check_momentum, config_rules, eps_rule, momentum_rule

#: the order of the mixture weights
SOURCES = ("in", "ln", "bn")


@config_rules(eps=eps_rule, momentum=momentum_rule)
class SwitchableNorm2d(NormLayer):
    """A learned mixture of instance, layer and batch normalization statistics.

    For x of shape (N, C, H, W) the three sources' means and (biased) variances are

    - IN: μ_in[n, c], σ²_in[n, c] over (H, W);
    - LN: μ_ln[n], σ²_ln[n] over (C, H, W);
    - BN: μ_bn[c], σ²_bn[c] over (N, H, W) in training; the running averages in evaluation.

    The mixture is μ = Σ_k w_k μ_k and σ² = Σ_k w'_k σ²_k with w = softmax(λ) and w' = softmax(λ')
    (separate learned logits for the means and the variances, k ∈ (in, ln, bn), all initialised equal),
    and y = γ (x − μ) / sqrt(σ² + ε) + β with a per-channel γ, β. LN's and BN's statistics are computed
    from IN's (σ²_ln = mean_c(σ²_in + μ²_in) − μ²_ln, likewise over n for BN), as in the paper.
    Running averages are updated as ``torch.nn.BatchNorm2d``'s (unbiased variance).

    Args:
        num_features: the channel count C.
        eps: added to the mixed variance, >= 0.
        momentum: the BN running-average update rate, in [0, 1].
        affine: learn the per-channel γ and β.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__(num_features)
        self.eps = check_eps(f"{LAYER_PREFIX}.eps", eps)
        self.momentum = check_momentum(f"{LAYER_PREFIX}.momentum", momentum)
        self.init_affine(affine)
        self.mean_logits = nn.Parameter(torch.ones(len(SOURCES)))
        self.var_logits = nn.Parameter(torch.ones(len(SOURCES)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SwitchableNorm2d expects (N, C, H, W) input, got shape {tuple(x.shape)}")
        mean_in = x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
        var_in = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        square_in = var_in + mean_in**2  # E[x²] over (H, W)
        mean_ln = mean_in.mean(dim=1, keepdim=True)  # (N, 1, 1, 1)
        var_ln = (square_in.mean(dim=1, keepdim=True) - mean_ln**2).clamp_min(0.0)
        if self.training:
            mean_bn = mean_in.mean(dim=0, keepdim=True)  # (1, C, 1, 1)
            var_bn = (square_in.mean(dim=0, keepdim=True) - mean_bn**2).clamp_min(0.0)
            with torch.no_grad():
                m = self.momentum
                count = x.numel() // x.shape[1]
                unbiased = var_bn.flatten() * (count / (count - 1)) if count > 1 else var_bn.flatten()
                self.running_mean.mul_(1.0 - m).add_(m * mean_bn.flatten().to(self.running_mean.dtype))
                self.running_var.mul_(1.0 - m).add_(m * unbiased.to(self.running_var.dtype))
                self.num_batches_tracked.add_(1)
        else:
            mean_bn = self.running_mean.reshape(1, -1, 1, 1)
            var_bn = self.running_var.reshape(1, -1, 1, 1)
        w_mean = torch.softmax(self.mean_logits, dim=0)
        w_var = torch.softmax(self.var_logits, dim=0)
        mean = w_mean[0] * mean_in + w_mean[1] * mean_ln + w_mean[2] * mean_bn
        var = w_var[0] * var_in + w_var[1] * var_ln + w_var[2] * var_bn
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return y

    def record_state(self) -> dict[str, dict[str, float]]:
        """The softmaxed mixture weights: ``{"mean_weights": {"in": …, "ln": …, "bn": …}, "var_weights": …}``."""
        with torch.no_grad():
            w_mean = torch.softmax(self.mean_logits, dim=0).tolist()
            w_var = torch.softmax(self.var_logits, dim=0).tolist()
        return {
            "mean_weights": dict(zip(SOURCES, w_mean, strict=True)),
            "var_weights": dict(zip(SOURCES, w_var, strict=True)),
        }
