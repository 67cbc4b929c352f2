"""Norms from the batch-normalization family, for activations x of shape (N, C, H, W).

All of them normalize each channel c with statistics over the batch and the spatial axes in training
and with running averages in evaluation, so one sample's eval output does not depend on the rest of
the batch. Running averages follow ``torch.nn.BatchNorm2d``: ``running = (1 − momentum)·running +
momentum·batch_stat``, with the unbiased variance (n / (n − 1), n the number of values averaged).

- :class:`MeanOnlyBatchNorm2d` (Salimans & Kingma 2016, §4): y = x − μ_c + b_c, μ_c over (N, H, W).
- :class:`BatchRenorm2d` (Ioffe 2017): BN corrected towards the running statistics by r and d.
- :class:`GhostBatchNorm2d` (Hoffer et al. 2017): BN over virtual sub-batches of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.norms.base import NormLayer
from src.norms.checks import (
    LAYER_PREFIX,
    check_eps,
    check_int_at_least,
    check_momentum,
    check_number_at_least,
    check_virtual_batch,
    config_rules,
    eps_rule,
    int_rule,
    momentum_rule,
    number_rule,
    virtual_batch_rule,
)


def _per_channel(t: Tensor) -> Tensor:
    """A (C,) tensor as (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return t.reshape(1, -1, 1, 1)


def _check_input(module: nn.Module, x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{type(module).__name__} expects (N, C, H, W) input, got shape {tuple(x.shape)}")


def _unbiased(var: Tensor, count: int) -> Tensor:
    """The biased variance of ``count`` values turned unbiased (as BN's running variance)."""
    return var * (count / (count - 1)) if count > 1 else var


class _RunningStatsNorm(NormLayer):
    """Per-channel running mean (and variance), a step counter and an optional per-channel affine."""

    def __init__(
        self, num_features: int, momentum: float, eps: float = 0.0, affine: bool = True, track_var: bool = True
    ):
        super().__init__(num_features)
        self.momentum = check_momentum(f"{LAYER_PREFIX}.momentum", momentum)
        self.eps = check_eps(f"{LAYER_PREFIX}.eps", eps)
        self.affine = affine
        self.init_affine(affine)
        self.register_buffer("running_mean", torch.zeros(num_features))
        if track_var:
            self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        if hasattr(self, "running_var"):
            self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    @torch.no_grad()
    def _update(self, buffer: Tensor, values: Tensor) -> None:
        """Apply the running-average update once per row of ``values`` (shape (G, C)), in order.

        Closed form of G sequential updates: (1 − m)^G·r + Σ_i m·(1 − m)^(G − i)·s_i.
        """
        m = self.momentum
        groups = values.shape[0]
        decay = torch.tensor([(1.0 - m) ** k for k in range(groups - 1, -1, -1)], dtype=buffer.dtype)
        buffer.mul_((1.0 - m) ** groups).add_((m * decay.to(buffer.device)[:, None] * values.to(buffer.dtype)).sum(0))

    def _affine(self, x_hat: Tensor) -> Tensor:
        if self.weight is None:
            return x_hat
        return x_hat * _per_channel(self.weight) + _per_channel(self.bias)

    def _eval_normalize(self, x: Tensor) -> Tensor:
        """(x − running mean) / sqrt(running var + ε), as BN in evaluation."""
        return (x - _per_channel(self.running_mean)) * _per_channel(torch.rsqrt(self.running_var + self.eps))


@config_rules(momentum=momentum_rule)
class MeanOnlyBatchNorm2d(_RunningStatsNorm):
    """Mean-only batch normalization (Salimans & Kingma 2016), the companion of weight normalization.

    y[n, c, h, w] = x[n, c, h, w] − μ_c + b_c, where μ_c is the mean over (N, H, W) in training and the
    running mean in evaluation, and b_c a learned bias. No division by a standard deviation and no
    scale: with weight normalization the scale is the weight's g.

    Args:
        num_features: the channel count C.
        momentum: the running-mean update rate, in [0, 1].
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__(num_features, momentum, affine=False, track_var=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            self._update(self.running_mean, mean.detach()[None])
            self.num_batches_tracked.add_(1)
        else:
            mean = self.running_mean
        return x - _per_channel(mean) + _per_channel(self.bias)


@config_rules(
    eps=eps_rule, momentum=momentum_rule, r_max=number_rule(1.0), d_max=number_rule(0.0), warmup_steps=int_rule(0)
)
class BatchRenorm2d(_RunningStatsNorm):
    """Batch renormalization (Ioffe 2017): BN whose output is corrected towards the running statistics.

    Training, per channel c, with μ_B, σ_B² the mean and biased variance over (N, H, W), σ_B =
    sqrt(σ_B² + ε), and μ, σ = sqrt(running_var + ε) the running statistics before this step::

        r = clip(σ_B / σ, 1 / r_max, r_max),   d = clip((μ_B − μ) / σ, −d_max, d_max)   (no gradient)
        y = γ · ((x − μ_B) / σ_B · r + d) + β

    Evaluation: y = γ · (x − μ) / σ + β, as BN. With r_max = 1 and d_max = 0 training is exactly BN.

    Warm-up: the limits grow linearly with the step t (training forwards, counted in the buffer
    ``num_batches_tracked``) from r_max = 1, d_max = 0 at t = 0 to the configured values at
    t = ``warmup_steps`` (0: from the start). The paper keeps plain BN for 5k steps and relaxes to
    r_max = 3 over 40k and d_max = 5 over 25k steps; here one ramp serves both. The running variance
    is averaged as in BN (the paper averages σ instead of σ²).

    Args:
        num_features: the channel count C.
        eps: added to the variances, >= 0.
        momentum: the running-average update rate α, in [0, 1].
        r_max: the final bound on r, >= 1.
        d_max: the final bound on |d|, >= 0.
        warmup_steps: training steps over which the bounds reach their final values, >= 0.
        affine: learn the per-channel γ and β.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 0,
        affine: bool = True,
    ):
        super().__init__(num_features, momentum, eps=eps, affine=affine)
        self.r_max = check_number_at_least(f"{LAYER_PREFIX}.r_max", r_max, 1.0)
        self.d_max = check_number_at_least(f"{LAYER_PREFIX}.d_max", d_max, 0.0)
        self.warmup_steps = check_int_at_least(f"{LAYER_PREFIX}.warmup_steps", warmup_steps, 0)

    #: the step count a packed run (:mod:`src.sweep.pack`) sets before each forward: there the counter is one
    #: entry per member (all equal: members step in lockstep), which ``int()`` cannot read under vmap
    packed_step: int | None = None

    def limits(self) -> tuple[float, float]:
        """The current (r_max, d_max) of the warm-up schedule."""
        step = int(self.num_batches_tracked) if self.packed_step is None else self.packed_step
        progress = 1.0 if self.warmup_steps == 0 else min(1.0, step / self.warmup_steps)
        return 1.0 + (self.r_max - 1.0) * progress, self.d_max * progress

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        if not self.training:
            return self._affine(self._eval_normalize(x))
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            r_max, d_max = self.limits()
            running_std = torch.sqrt(self.running_var + self.eps)
            r = (std / running_std).clamp(1.0 / r_max, r_max)
            d = ((mean - self.running_mean) / running_std).clamp(-d_max, d_max)
            count = x.numel() // x.shape[1]
            self._update(self.running_mean, mean[None])
            self._update(self.running_var, _unbiased(var, count)[None])
            self.num_batches_tracked.add_(1)
        x_hat = (x - _per_channel(mean)) / _per_channel(std) * _per_channel(r) + _per_channel(d)
        return self._affine(x_hat)

    def record_state(self) -> dict[str, float]:
        """The warm-up's position at the end of training: steps and the current bounds."""
        r_max, d_max = self.limits()
        return {"steps": int(self.num_batches_tracked), "r_max": r_max, "d_max": d_max}

    def extra_repr(self) -> str:
        return f"{self.num_features}, r_max={self.r_max:g}, d_max={self.d_max:g}, warmup_steps={self.warmup_steps}"


@config_rules(virtual_batch=virtual_batch_rule, eps=eps_rule, momentum=momentum_rule)
class GhostBatchNorm2d(_RunningStatsNorm):
    """Ghost batch normalization (Hoffer et al. 2017): BN over virtual batches of ``virtual_batch`` samples.

    Training: the batch is split, in order, into virtual batches of ``virtual_batch`` samples; each
    channel of each virtual batch is normalized by its own mean and biased variance over
    (virtual_batch, H, W), then y = γ x̂ + β. The running statistics are updated once per virtual
    batch, in order (the paper's Algorithm 1), i.e. exactly as BN applied to each virtual batch in turn.
    Evaluation: running statistics, as BN. ``virtual_batch`` >= the batch is plain BN; a batch that
    it does not divide (only possible outside the configured training, which validates it) ends with
    one smaller virtual batch.

    Args:
        num_features: the channel count C.
        virtual_batch: samples per virtual batch, >= 1 (must divide ``batch``: checked by the factory).
        eps: added to the variance, >= 0.
        momentum: the running-average update rate, in [0, 1].
        affine: learn the per-channel γ and β.
    """

    def __init__(
        self, num_features: int, virtual_batch: int = 4, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True
    ):
        super().__init__(num_features, momentum, eps=eps, affine=affine)
        self.virtual_batch = check_virtual_batch(f"{LAYER_PREFIX}.virtual_batch", virtual_batch)

    def _normalize_groups(self, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``groups`` (G, v, C, H, W): normalized values and each group's mean and unbiased variance (G, C)."""
        mean = groups.mean(dim=(1, 3, 4), keepdim=True)
        var = groups.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        normalized = (groups - mean) * torch.rsqrt(var + self.eps)
        count = groups.shape[1] * groups.shape[3] * groups.shape[4]
        return normalized.flatten(0, 1), mean.flatten(1), _unbiased(var.flatten(1), count)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        if not self.training:
            return self._affine(self._eval_normalize(x))
        n, c, h, w = x.shape
        size = min(self.virtual_batch, n)
        full = (n // size) * size
        parts = [self._normalize_groups(x[:full].reshape(n // size, size, c, h, w))]
        if full < n:
            parts.append(self._normalize_groups(x[full:].unsqueeze(0)))
        normalized, means, variances = (torch.cat(items) for items in zip(*parts, strict=True))
        with torch.no_grad():
            self._update(self.running_mean, means.detach())
            self._update(self.running_var, variances.detach())
            self.num_batches_tracked.add_(1)
        return self._affine(normalized)

    def describe(self) -> str:
        return f"GhostBatchNorm2d(channels={self.num_features}, virtual_batch={self.virtual_batch})"

    def extra_repr(self) -> str:
        return f"{self.num_features}, virtual_batch={self.virtual_batch}"
