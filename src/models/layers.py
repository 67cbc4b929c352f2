"""Building blocks shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from src.norms import Normalization


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """3×3 convolution with padding 1; ``bias`` only where the norm after it adds no shift (:func:`conv_bias`)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def conv_bias(norm: Normalization, out_channels: int) -> bool:
    """Whether a conv followed by ``norm`` needs its own bias: exactly when the norm adds no learned shift.

    A norm with a shift computes γ x̂ + β, and a conv bias b would be redundant there (normalizing
    removes it, or β absorbs it); without one (no norm, weight-only norms, PixelNorm, affine=False)
    y = norm(W * x + b) needs b to learn an offset at all.
    """
    return not norm.adds_shift(out_channels)


def conv_norm_relu(in_channels: int, out_channels: int, norm: Normalization, stride: int = 1) -> nn.Sequential:
    """conv3×3 → norm → ReLU (indices 0, 1, 2); index 2 is ``nn.Identity`` when the norm brings its own
    activation (FRN's TLU), see :meth:`Normalization.activation`."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride, bias=conv_bias(norm, out_channels)),
        norm(out_channels, activation=True),
        norm.activation(inplace=True),
    )


def init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, as in He et al. 2015/2016; conv biases (only where
    the norm adds no shift) start at 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def check_input_shape(input_shape: tuple[int, int, int] | list[int], min_size: int) -> tuple[int, int, int]:
    """Validate (C, H, W) and return it as a tuple."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={list(input_shape)} must be (channels, height, width)")
    channels, height, width = (int(v) for v in input_shape)
    if min(height, width) < min_size:
        raise ValueError(f"input_shape={list(input_shape)}: images must be at least {min_size}×{min_size}")
    return channels, height, width


def check_widths(widths: Sequence[int]) -> list[int]:
    """``model.widths`` as a list of channel counts: at least one stage, each an integer >= 1."""
    values = list(widths)
    if not values or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values):
        raise ValueError(f"model.widths={values!r} is invalid: give one integer >= 1 per stage (its channels)")
    return values
