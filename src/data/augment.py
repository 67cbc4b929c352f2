"""Batch-level augmentation that runs on whatever device the batch is on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Per sample: zero-pad by ``pad``, crop back to the original size at a random offset, flip
    horizontally with probability 1/2 (the standard CIFAR augmentation of He et al. 2016).

    ``images`` is a float batch (N, C, H, W) before mean/std normalization, so padding is black.
    """
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (n,), device=device)
    left = torch.randint(0, 2 * pad + 1, (n,), device=device)
    rows = (top[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=device))[:, None, None, :]
    batch_index = torch.arange(n, device=device)[:, None, None, None]
    channel_index = torch.arange(c, device=device)[None, :, None, None]
    cropped = padded[batch_index, channel_index, rows, cols]
    flip = torch.rand(n, device=device) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


AUGMENTATIONS = {"none": None, "crop_flip": random_crop_flip}
