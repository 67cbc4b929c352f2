"""The CIFAR ResNets of He et al. 2016 (Section 4.2): depth 6n + 2 (20, 32, 44, 56, 110)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.models.layers import check_input_shape, check_widths, conv3x3, conv_bias, init_weights
from src.norms import Normalization


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """conv→norm→ReLU→conv→norm, plus the shortcut, then ReLU.

    ``act1`` is the ReLU after ``norm1``, or ``nn.Identity`` when the norm brings its own activation
    (FRN's TLU: ``norm1`` is built with it). ``norm2`` is followed by the addition, not by an
    activation, so it is built without one (FRN without TLU); the ReLU after the addition is always a
    ReLU. Convs have a bias only where the norm after them adds no learned shift.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: Normalization,
        zero_init_last: bool,
        shortcut: str,
    ):
        super().__init__()
        bias = conv_bias(norm, out_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias=bias)
        self.norm1 = norm(out_channels, activation=True)
        self.act1 = norm.activation()
        self.conv2 = conv3x3(out_channels, out_channels, bias=bias)
        self.norm2 = norm(out_channels, zero_init=zero_init_last)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "pad":
                self.shortcut = PadShortcut(out_channels - in_channels)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), norm(out_channels)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: conv3×3(16) → 3 stages of n blocks (16, 32, 64 channels) → pool → fc.

    Args:
        input_shape: (C, H, W) of the images; works for 1 or 3 channels and 8×8 to 32×32 inputs.
        num_classes: size of the classifier output.
        norm: the norm factory; every conv except shortcut projections is followed by it.
        depth: 6n + 2.
        widths: channels of the three stages.
        zero_init_last: zero-initialise the scale of the last norm in each block (GN paper, §5.1).
        shortcut: ``pad`` (option A, parameter-free, the CIFAR original) or ``conv`` (1×1 conv + norm).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        norm: Normalization,
        depth: int = 20,
        widths: Sequence[int] = (16, 32, 64),
        zero_init_last: bool = False,
        shortcut: str = "pad",
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.depth={depth} is invalid: CIFAR ResNets have depth 6n+2 (20, 32, 56, 110)")
        if shortcut not in ("pad", "conv"):
            raise ValueError(f"model.shortcut={shortcut!r} is invalid: use 'pad' or 'conv'")
        widths = check_widths(widths)
        channels, _, _ = check_input_shape(input_shape, min_size=4)
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            conv3x3(channels, widths[0], bias=conv_bias(norm, widths[0])),
            norm(widths[0], activation=True),
            norm.activation(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, norm, zero_init_last, shortcut))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))
