"""Batches drawn from a split that lives on the training device: no workers, no host→device copies.

For the small datasets of a normalization study (all of ours fit in a few hundred MB as uint8), keeping
each split on the GPU and indexing it with a device-side permutation removes the input pipeline from
the step time, which on a GPU is launch-bound for small CNNs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class DeviceBatches:
    """An iterable of ``[images, labels]`` batches indexed on ``images.device``.

    Training order: a fresh ``torch.randperm`` per epoch on the device (seeded through the global RNG,
    like the CPU path), the last partial batch dropped. Evaluation: sequential, partial batch kept.
    With ``num_shards`` > 1 (DDP) each shard takes every ``num_shards``-th index of the permutation.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        shard: int = 0,
        num_shards: int = 1,
    ):
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.shard = shard
        self.num_shards = num_shards

    def _indices(self) -> torch.Tensor:
        count = len(self.labels)
        device = self.images.device
        order = torch.randperm(count, device=device) if self.shuffle else torch.arange(count, device=device)
        if self.num_shards > 1:
            per_shard = count // self.num_shards
            order = order[self.shard :: self.num_shards][:per_shard]
        return order

    def __len__(self) -> int:
        count = len(self.labels) // self.num_shards
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        order = self._indices()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield [self.images[index], self.labels[index]]
