"""Activation norms built from PyTorch layers, with the GN paper's definitions.

For an activation x of shape (N, C, H, W):

- BN normalizes each channel over (N, H, W): ``torch.nn.BatchNorm2d``, used directly by ``conf/norm/bn.yaml``.
- LN normalizes each sample over (C, H, W) with a per-channel affine: GroupNorm with 1 group.
- IN normalizes each sample and channel over (H, W) with a per-channel affine: GroupNorm with C groups.
- GN normalizes each sample over (C/G, H, W) within each of G channel groups, per-channel affine.
"""

from __future__ import annotations

from torch import nn

from src.norms.checks import config_rules, eps_rule, int_rule


def resolve_groups(num_channels: int, groups: int, min_group_size: int = 1) -> int:
    """The number of GN groups used for a layer with ``num_channels`` channels.

    Rule: ``min(groups, num_channels // min_group_size)``, so that no group holds fewer than
    ``min_group_size`` channels (a 16-channel layer with groups=32, min_group_size=2 gets 8 groups
    of 2). The result must divide ``num_channels``; otherwise it is a configuration error.
    """
    if groups < 1:
        raise ValueError(f"norm.layer.groups={groups} is invalid: it must be an integer >= 1")
    if min_group_size < 1:
        raise ValueError(f"norm.layer.min_group_size={min_group_size} is invalid: it must be an integer >= 1")
    resolved = max(1, min(groups, num_channels // min_group_size))
    if num_channels % resolved:
        raise ValueError(
            f"norm.layer.groups={groups} gives {resolved} groups for a layer with {num_channels} "
            f"channels, which it does not divide: choose groups (or min_group_size) so that the "
            f"group count divides every layer's channel count"
        )
    return resolved


@config_rules(groups=int_rule(1), min_group_size=int_rule(1), eps=eps_rule)
def group_norm(
    num_channels: int, groups: int = 32, min_group_size: int = 1, eps: float = 1e-5, affine: bool = True
) -> nn.GroupNorm:
    """GroupNorm with :func:`resolve_groups` applied: G = min(groups, C // min_group_size) groups.

    The groups a layer got are in its description (``GroupNorm(groups=8, channels=16)``), which
    :class:`src.norms.Normalization` logs per run beside the requested ``groups``/``min_group_size``.
    """
    resolved = resolve_groups(num_channels, groups, min_group_size)
    return nn.GroupNorm(resolved, num_channels, eps=eps, affine=affine)


@config_rules(eps=eps_rule)
def layer_norm(num_channels: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """The GN paper's LN: per sample over (C, H, W), with a per-channel scale and shift."""
    return nn.GroupNorm(1, num_channels, eps=eps, affine=affine)


@config_rules(eps=eps_rule)
def instance_norm(num_channels: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """IN: per sample and channel over (H, W), with a per-channel affine; same in train and eval."""
    return nn.GroupNorm(num_channels, num_channels, eps=eps, affine=affine)
