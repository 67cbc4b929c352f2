"""Weight reparametrizations, applied in place to each ``nn.Conv2d`` / ``nn.Linear`` by the factory.

Each is a function ``f(module, **options) -> module`` used as a norm's ``weight:`` partial; the factory
(:meth:`src.norms.Normalization.apply_weight`) calls it on every conv and linear layer of the model.
The "filter" or "output unit" i of a weight W is W[i], of shape (in) for a linear layer and
(in, kh, kw) for a conv; its fan-in is that slice's size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

from src.norms.checks import WEIGHT_PREFIX, check_eps, check_int_at_least, config_rules, eps_rule, int_rule


@config_rules()
def weight_norm(module: nn.Module) -> nn.Module:
    """Weight normalization (Salimans & Kingma 2016): W[i] = g_i · V[i] / ‖V[i]‖ for each output unit i.

    The norm is over each output unit's fan-in (all axes but 0); g (one per output unit) and V are the
    learned parameters, g initialised to ‖V[i]‖ so that the layer starts with its initial weight.
    Uses ``torch.nn.utils.parametrizations.weight_norm`` (dim=0). No batch statistics.
    """
    return parametrizations.weight_norm(module, name="weight", dim=0)


@config_rules(n_power_iterations=int_rule(1), eps=eps_rule)
def spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018): W / σ(W), σ the largest singular value.

    A conv weight (out, in, kh, kw) is taken as the (out, in·kh·kw) matrix, as in the paper. σ is
    estimated by power iteration with persistent vectors u, v: ``n_power_iterations`` steps per forward
    in training mode (one training step = one forward), none in evaluation, which uses the stored u, v
    (σ = uᵀ W v). Uses ``torch.nn.utils.parametrizations.spectral_norm`` (which also runs 15 iterations
    when it is applied, to start from a good u).

    Args:
        n_power_iterations: power-iteration steps per training forward, >= 1.
        eps: added to norms when normalizing u and v, >= 0.
    """
    n_power_iterations = check_int_at_least(f"{WEIGHT_PREFIX}.n_power_iterations", n_power_iterations, 1)
    eps = check_eps(f"{WEIGHT_PREFIX}.eps", eps)
    return parametrizations.spectral_norm(module, name="weight", n_power_iterations=n_power_iterations, eps=eps)


@config_rules(eps=eps_rule)
class WeightStandardization(nn.Module):
    """The parametrization W[i] ↦ (W[i] − mean(W[i])) / sqrt(var(W[i]) + ε), per output filter i.

    mean and (biased) var are over the filter's fan-in (all axes but 0), so every standardized filter
    has zero mean and unit variance (up to ε).
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = check_eps(f"{WEIGHT_PREFIX}.eps", eps)

    def forward(self, weight: Tensor) -> Tensor:
        dims = tuple(range(1, weight.dim()))
        mean = weight.mean(dim=dims, keepdim=True)
        var = weight.var(dim=dims, unbiased=False, keepdim=True)
        return (weight - mean) * torch.rsqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


@config_rules(eps=eps_rule)
def weight_standardization(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Weight standardization (Qiao et al. 2019) of a conv layer's filters; other layers are left alone.

    The paper standardizes convolutions only (the classifier stays a plain linear layer), and pairs
    WS with GN (``conf/norm/ws_gn.yaml``). See :class:`WeightStandardization` for the math.
    """
    if isinstance(module, nn.Conv2d):
        parametrize.register_parametrization(module, "weight", WeightStandardization(eps))
    return module


@config_rules(eps=eps_rule)
def standardize_convolutions(model: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Weight standardization of every convolution of ``model`` that is not standardized already, on top
    of whatever norm the model uses (``standardize_weights=true``: BN+WS beside GN+WS, Qiao et al. 2019)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not _standardized(module):
            weight_standardization(module, eps)
    return model


def _standardized(module: nn.Conv2d) -> bool:
    parametrizations = getattr(module, "parametrizations", None)
    return parametrizations is not None and any(
        isinstance(p, WeightStandardization) for p in getattr(parametrizations, "weight", [])
    )
