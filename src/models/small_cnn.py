"""A small plain CNN for MNIST-size inputs (8×8 digits up to 32×32)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from src.models.layers import check_input_shape, check_widths, conv_norm_relu, init_weights
from src.norms import Normalization


class SmallCNN(nn.Module):
    """Stages of two conv→norm→ReLU layers; each stage after the first halves the resolution.

    widths=(32, 64, 128) on 28×28 gives 28→14→7 feature maps (8→4→2 on digits), then global average
    pooling and a linear classifier. Every convolution is followed by the configured norm.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        norm: Normalization,
        widths: Sequence[int] = (32, 64, 128),
    ):
        super().__init__()
        widths = check_widths(widths)
        channels, _, _ = check_input_shape(input_shape, min_size=2 ** (len(widths) - 1))
        layers: list[nn.Module] = []
        for stage, width in enumerate(widths):
            layers.append(conv_norm_relu(channels, width, norm, stride=1 if stage == 0 else 2))
            layers.append(conv_norm_relu(width, width, norm))
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))
