"""Batch-level augmentation that runs on whatever device the batch is on.

Every augmentation takes ``(images, mean)``: a float batch (N, C, H, W) scaled to [0, 1] *before*
mean/std normalization, and the dataset's per-channel mean (1, C, 1, 1). :data:`AUGMENTATIONS` is the
registry ``dataset.augment`` picks from.

The crop's padding is not neutral between norms. Zeros before normalization (``crop_flip``, He et al.
2016's recipe and normlab's default) give each shifted crop a black border of up to ``pad`` pixels: after
normalization that border sits at −mean/std, far from the image's own statistics. A batch norm averages
the border over the batch; a per-sample norm (GN, LN, IN) computes each image's mean and variance with
its own border, so they move with the crop's offset. ``crop_flip_mean`` pads with the dataset mean (zeros
*after* normalization: the border carries no signal and shifts no per-image mean much); ``crop_flip_reflect``
mirrors the image into the border (no constant band at all).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

PADDINGS = ("zeros", "mean", "reflect")


def random_crop_flip(
    images: torch.Tensor, pad: int = 4, padding: str = "zeros", mean: torch.Tensor | None = None
) -> torch.Tensor:
    """Per sample: pad by ``pad``, crop back to the original size at a random offset, flip horizontally
    with probability 1/2 (the standard CIFAR augmentation of He et al. 2016).

    ``padding``: ``zeros`` (black before normalization), ``mean`` (the per-channel ``mean``, i.e. zeros
    after normalization) or ``reflect`` (``F.pad(mode="reflect")``: x[-k] = x[k]). The random draws
    (offsets, flips) are the same whatever the padding, so runs that differ only in it see the same crops.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} is invalid: choose one of {PADDINGS}")
    n, c, h, w = images.shape
    device = images.device
    if padding == "reflect":
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    elif padding == "mean":
        if mean is None:
            raise ValueError("padding='mean' needs the dataset's per-channel mean")
        fill = mean.to(device=device, dtype=images.dtype).reshape(1, -1, 1, 1)
        padded = F.pad(images - fill, (pad, pad, pad, pad)) + fill
    else:
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


Augmentation = Callable[..., torch.Tensor]
AUGMENTATIONS: dict[str, Augmentation | None] = {
    "none": None,
    "crop_flip": partial(random_crop_flip, padding="zeros"),  # the default: finished runs keep their hash
    "crop_flip_mean": partial(random_crop_flip, padding="mean"),
    "crop_flip_reflect": partial(random_crop_flip, padding="reflect"),
}
