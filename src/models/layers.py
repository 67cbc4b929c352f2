"""Building blocks shared by the models."""

from __future__ import annotations

from torch import nn

from src.norms import Normalization


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias (the norm that follows has its own shift)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv_norm_relu(in_channels: int, out_channels: int, norm: Normalization, stride: int = 1) -> nn.Sequential:
    """conv3×3 → norm → ReLU."""
    return nn.Sequential(conv3x3(in_channels, out_channels, stride), norm(out_channels), nn.ReLU(inplace=True))


def init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, as in He et al. 2015/2016."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def check_input_shape(input_shape: tuple[int, int, int] | list[int], min_size: int) -> tuple[int, int, int]:
    """Validate (C, H, W) and return it as a tuple."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={list(input_shape)} must be (channels, height, width)")
    channels, height, width = (int(v) for v in input_shape)
    if min(height, width) < min_size:
        raise ValueError(f"input_shape={list(input_shape)}: images must be at least {min_size}×{min_size}")
    return channels, height, width
