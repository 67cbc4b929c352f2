"""Synchronized batch normalization that also works in CPU (gloo) process groups."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from src.norms.checks import config_rules, eps_rule, optional_momentum_rule


@config_rules(eps=eps_rule, momentum=optional_momentum_rule)
class SyncBatchNorm2d(_BatchNorm):
    """Synchronized BN: each channel over (N, H, W) of the batches of *all* processes of a DDP run.

    In training under an initialized process group with more than one process, the per-channel mean
    and biased variance are over the union of every process's batch (N_total = batch × processes), and
    the gradients flow through the other processes' samples too; the running statistics (unbiased
    variance of that union, BN's momentum rule) are used in evaluation. Otherwise — one process, no
    process group, evaluation — it is exactly ``torch.nn.BatchNorm2d``.

    Why not ``torch.nn.SyncBatchNorm`` itself: DDP refuses any module holding one on CPU ("SyncBatchNorm
    layers only work with GPU modules") and its forward raises for CPU inputs in a process group, so
    ``trainer=ddp trainer.accelerator=cpu`` could not run it. Here, on GPUs (any non-CPU device) the
    synchronized forward/backward is torch's own (the autograd function behind ``nn.SyncBatchNorm``); on
    CPU the per-channel sums of x and x² and the value counts are summed over the processes with the
    differentiable ``torch.distributed.nn.functional.all_reduce``.

    Args: as ``torch.nn.SyncBatchNorm`` (``process_group``: None for the whole world).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: object | None = None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"SyncBatchNorm2d expects (N, C, H, W) input, got shape {tuple(input.shape)}")

    def _world_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group or dist.group.WORLD)

    def forward(self, input: Tensor) -> Tensor:
        world_size = self._world_size() if self.training else 1
        if world_size <= 1:
            return super().forward(input)  # plain BN (F.batch_norm)
        self._check_input_dim(input)
        momentum = 0.0
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        group = self.process_group or dist.group.WORLD
        if input.device.type != "cpu":
            from torch.nn.modules._functions import SyncBatchNorm as sync_batch_norm

            running_mean = self.running_mean if self.track_running_stats else None
            running_var = self.running_var if self.track_running_stats else None
            return sync_batch_norm.apply(
                input, self.weight, self.bias, running_mean, running_var, self.eps, momentum, group, world_size
            )
        return self._cpu_forward(input, momentum, group)

    def _cpu_forward(self, input: Tensor, momentum: float, group: object) -> Tensor:
        from torch.distributed.nn.functional import all_reduce

        channels = input.shape[1]
        local_count = torch.full((1,), input.numel() // channels, dtype=input.dtype, device=input.device)
        stats = torch.cat([input.sum(dim=(0, 2, 3)), input.pow(2).sum(dim=(0, 2, 3)), local_count])
        stats = all_reduce(stats, group=group)  # summed over the processes; its backward sums the gradients
        count = stats[-1]
        mean = stats[:channels] / count
        var = (stats[channels : 2 * channels] / count - mean.pow(2)).clamp_min(0.0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(count), momentum)
        y = (input - mean.reshape(1, -1, 1, 1)) * torch.rsqrt(var.reshape(1, -1, 1, 1) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: float, momentum: float) -> None:
        unbiased = var * (n / (n - 1)) if n > 1 else var
        self.running_mean.mul_(1.0 - momentum).add_(momentum * mean)
        self.running_var.mul_(1.0 - momentum).add_(momentum * unbiased)
